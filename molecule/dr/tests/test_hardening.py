"""The shared hardening baseline (tests/integration/hardening.py) on the three database
hosts, after the drills (switchover, failover, rejoin, minor update) have moved the
primary around: none of them may have loosened anything."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.hardening import CHECK_IDS, CHECKS
from tests.integration.pglab import node

DATABASE_HOSTS = ["mdus-dr-pg1", "mdus-dr-pg2", "mdus-dr-pg3"]


@pytest.mark.parametrize("name", DATABASE_HOSTS)
@pytest.mark.parametrize("check", CHECKS, ids=CHECK_IDS)
def test_hardening(name: str, check: Callable[[Any], None]) -> None:
    check(node(name))
