"""Make the shared verifier helpers importable; hosts of the lab scenario as fixtures."""

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from backup_helpers import PRIMARY, REPLICA, REPO

from tests.integration.pglab import node


@pytest.fixture(scope="session")
def primary() -> Any:
    return node(PRIMARY)


@pytest.fixture(scope="session")
def replica() -> Any:
    return node(REPLICA)


@pytest.fixture(scope="session")
def repo() -> Any:
    return node(REPO)
