"""Load the Jinja filter and test plugins once in the controller, before each task runs.

Ansible forks a worker per host and task. A worker that templates a filter or test by
its short name first loads every filter and test plugin file of the configured paths
(the roles' filter_plugins, plugins/filter, Ansible's own), and Jinja's compiler looks
each filter up again for every template. The controller process itself templates next
to nothing, so every worker did all of that from scratch: ~45 s of the workers' CPU on
the 4-host lab re-run. Loaded in the controller when a task starts, the plugins are
inherited by the workers it forks. A role loaded later (include_role) adds its plugin
directory and clears Ansible's table; the next task start loads it again. The same
plugins are found the same way, only once.
"""

from __future__ import annotations

from typing import Any

from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import filter_loader, test_loader

DOCUMENTATION = """
    name: jinja_plugins_once
    type: aggregate
    short_description: load the Jinja filter and test plugins in the controller
    description:
        - On each task start, loads every filter and test plugin (a no-op when they are
          loaded already), so the forked workers inherit them instead of loading them again.
    requirements:
      - enable in configuration (callbacks_enabled)
"""


def load_jinja_plugins() -> None:
    """Load the filter and test plugins (all() keeps them; later calls only iterate)."""
    for loader in (filter_loader, test_loader):
        for _plugin in loader.all():
            pass


class CallbackModule(CallbackBase):  # type: ignore[misc]
    """Loads the Jinja plugins before the workers of a task are forked."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "jinja_plugins_once"
    CALLBACK_NEEDS_ENABLED = True

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        load_jinja_plugins()

    def v2_playbook_on_handler_task_start(self, task: Any) -> None:
        load_jinja_plugins()
