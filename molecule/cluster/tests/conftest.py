"""Make the shared verifier helpers (tests/integration) importable; the replica as a fixture."""

import sys
from pathlib import Path
from typing import Any

import pytest
import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))


@pytest.fixture(scope="session")
def replica() -> Any:
    """The scenario's replica (the tests' `host` is the primary)."""
    return testinfra.get_host("docker://mdus-cluster-pg2")
