"""The shared hardening baseline (tests/integration/hardening.py) on both database hosts
of the lab."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.hardening import CHECK_IDS, CHECKS
from tests.integration.pglab import node

DATABASE_HOSTS = ["mdus-lab-pg1", "mdus-lab-pg2"]


@pytest.mark.parametrize("name", DATABASE_HOSTS)
@pytest.mark.parametrize("check", CHECKS, ids=CHECK_IDS)
def test_hardening(name: str, check: Callable[[Any], None]) -> None:
    check(node(name))
