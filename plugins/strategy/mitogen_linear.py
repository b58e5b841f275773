# Managed in the MDUS platform repository: plugins/strategy/mitogen_linear.py
"""Mitogen's linear strategy under the name Ansible is told (opt-in, never required).

`ANSIBLE_STRATEGY=mitogen_linear` (the Makefile's default, `MITOGEN=0` turns it off)
runs the same plays with Mitogen: one persistent interpreter per host and user instead
of a new `docker exec`/ssh round trip and Python start per task. Without the
environment variable Ansible's own linear strategy runs, and Mitogen need not be
installed. The plugin itself lives in the `mitogen` package (requirements.txt); this
file only gives it a place on the strategy plugin path of ansible.cfg.
"""

from __future__ import annotations

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

__all__ = ["StrategyModule"]
