# Managed in the MDUS platform repository: plugins/strategy/mdus_linear.py
"""Ansible's linear strategy, with the Jinja filters and tests loaded once per run.

Ansible forks a worker per host and task. A worker that templates a filter or test by
its short name loads every filter and test plugin file of the configured paths first
(the roles' filter_plugins, plugins/filter, Ansible's own), and the compiler looks each
filter up again for every template. The controller process never templates, so each
worker did that from scratch: on the 4-host lab re-run ~45 s of the workers' CPU. Loaded
once in the controller before a task is queued, the workers inherit the loaded modules
and the name table (fork). Roles loaded later (include_role) add their directories and
clear the table; it is loaded again before the next task. Behaviour is unchanged: the
same plugins, found the same way, only loaded earlier.

ansible.cfg names this strategy; plugins/strategy/mitogen_linear.py does the same for
Mitogen's linear strategy (ANSIBLE_STRATEGY=mitogen_linear).
"""

from __future__ import annotations

from typing import Any

from ansible.plugins.loader import filter_loader, test_loader
from ansible.plugins.strategy.linear import StrategyModule as LinearStrategy


class JinjaPluginsOnce:
    """Strategy mixin: load the Jinja plugins in the controller before a task is queued."""

    @staticmethod
    def load_jinja_plugins() -> None:
        # all() loads the plugin files once and keeps them; later calls only iterate the table.
        for loader in (filter_loader, test_loader):
            for _plugin in loader.all():
                pass

    def _queue_task(self, *args: Any, **kwargs: Any) -> Any:
        self.load_jinja_plugins()
        return super()._queue_task(*args, **kwargs)  # type: ignore[misc]


class StrategyModule(JinjaPluginsOnce, LinearStrategy):
    """Ansible's linear strategy, Jinja plugins loaded in the controller."""
