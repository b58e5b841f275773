"""Make the shared verifier helpers importable; hosts of the lab scenario as fixtures."""

import sys
from pathlib import Path
from typing import Any

import pytest
import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from backup_helpers import PRIMARY, REPLICA, REPO


@pytest.fixture(scope="session")
def primary() -> Any:
    return testinfra.get_host(f"docker://{PRIMARY}")


@pytest.fixture(scope="session")
def replica() -> Any:
    return testinfra.get_host(f"docker://{REPLICA}")


@pytest.fixture(scope="session")
def repo() -> Any:
    return testinfra.get_host(f"docker://{REPO}")
