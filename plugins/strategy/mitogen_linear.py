# Managed in the MDUS platform repository: plugins/strategy/mitogen_linear.py
"""Mitogen's linear strategy under the name Ansible is told (opt-in, never required).

`ANSIBLE_STRATEGY=mitogen_linear` (the Makefile's default, `MITOGEN=0` turns it off)
runs the same plays with Mitogen: one persistent interpreter per host and user instead
of a new `docker exec`/ssh round trip and Python start per task. Without the
environment variable Ansible's own linear strategy runs, and Mitogen need not be
installed. The plugin itself lives in the `mitogen` package (requirements.txt); this
file gives it a place on the strategy plugin path of ansible.cfg, and lists the
installed collections once per run instead of once per task (below).

Ansible forks a worker per host and task. For a module that lives in a collection
(community.postgresql, community.crypto, ansible.posix, ...), Mitogen's planner in that
worker walked every collection directory of the `ansible` package (about a hundred,
each one's metadata read) to tell the connection where collections live: ~50 ms of CPU
per such task, ~5 s of a lab re-run. The directories do not change during a run, so
they are listed here, in the controller before any worker is forked, and every worker
hands the same list on. The first task of each module in a worker still sends it, as
Mitogen does; only the walk is gone.
"""

from __future__ import annotations

from typing import Any

import ansible.collections.list
import ansible_mitogen.planner
from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

__all__ = ["COLLECTION_DIRS", "StrategyModule"]

#: Every installed collection's directory, as Mitogen's own _load_collections lists them.
COLLECTION_DIRS: tuple[str, ...] = tuple(
    path.decode("utf-8") for path in ansible.collections.list.list_collection_dirs()
)


def _load_collections(invocation: Any) -> None:
    """Mitogen's _load_collections, with the directories listed once per run."""
    invocation._extra_sys_paths.update(COLLECTION_DIRS)


ansible_mitogen.planner._load_collections = _load_collections
