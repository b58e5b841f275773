"""The shared hardening baseline (tests/integration/hardening.py) on the single host."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.hardening import CHECK_IDS, CHECKS


@pytest.mark.parametrize("check", CHECKS, ids=CHECK_IDS)
def test_hardening(host: Any, check: Callable[[Any], None]) -> None:
    check(host)
