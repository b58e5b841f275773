"""Make the shared verifier helpers (tests/integration) importable; the replica as a fixture."""

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from tests.integration.pglab import node


@pytest.fixture(scope="session")
def replica() -> Any:
    """The scenario's replica (the tests' `host` is the primary)."""
    return node("mdus-cluster-pg2")
