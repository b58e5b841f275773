# Managed in the MDUS platform repository: plugins/strategy/mitogen_linear.py
"""Mitogen's linear strategy under the name Ansible is told (opt-in, never required).

`ANSIBLE_STRATEGY=mitogen_linear` (the Makefile's default, `MITOGEN=0` turns it off)
runs the same plays with Mitogen: one persistent interpreter per host and user instead
of a new `docker exec`/ssh round trip and Python start per task. Without the
environment variable the strategy of ansible.cfg runs (mdus_linear: Ansible's own
linear), and Mitogen need not be installed. The plugin itself lives in the `mitogen`
package (requirements.txt); this file gives it a place on the strategy plugin path of
ansible.cfg and loads the Jinja plugins once in the controller, as mdus_linear does.
"""

from __future__ import annotations

import sys

from ansible.plugins.loader import strategy_loader
from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule as MitogenLinear

# The mixin of plugins/strategy/mdus_linear.py (strategy plugins are not importable by name).
_mdus_linear = sys.modules[strategy_loader.get("mdus_linear", class_only=True).__module__]


class StrategyModule(_mdus_linear.JinjaPluginsOnce, MitogenLinear):  # type: ignore[misc,name-defined]
    """Mitogen's linear strategy, Jinja plugins loaded in the controller."""
