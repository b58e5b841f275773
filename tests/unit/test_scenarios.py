"""Every molecule scenario runs in CI and its verifier has tests to run.

testinfra's verifier prints "no tests found" and passes when the verifier directory holds
no test files; pytest itself fails a run that collects nothing. So each scenario must name
a verifier directory with test files that define tests, and `make test` must run it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).parents[2]
SCENARIOS = sorted(p.parent for p in (REPO / "molecule").glob("*/molecule.yml"))


def _tests_in(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    ]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario_verifier_has_tests(scenario: Path) -> None:
    config = yaml.safe_load((scenario / "molecule.yml").read_text())
    verifier = config.get("verifier", {})
    assert verifier.get("name") == "testinfra", f"{scenario.name}: verifier is not testinfra"
    directory = scenario / verifier.get("directory", "tests")
    files = sorted(directory.glob("test_*.py"))
    assert files, f"{scenario.name}: no test_*.py in {directory}"
    assert all(_tests_in(f) for f in files), f"{scenario.name}: a test file without tests"
    assert "verify" in config["scenario"]["test_sequence"], f"{scenario.name}: no verify step"


def test_every_scenario_runs_in_make_test() -> None:
    match = re.search(r"^SCENARIOS \?= (.+)$", (REPO / "Makefile").read_text(), re.M)
    assert match, "SCENARIOS missing from the Makefile"
    assert sorted(match.group(1).split()) == sorted(s.name for s in SCENARIOS)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_every_scenario_runs_the_shared_hardening_checks(scenario: Path) -> None:
    """The hardening baseline is written once (tests/integration/hardening.py) and every
    scenario with database hosts runs all of it, not a copy of some of it."""
    config = yaml.safe_load((scenario / "molecule.yml").read_text())
    if not any("postgres" in p.get("groups", []) for p in config.get("platforms", [])):
        return
    directory = scenario / config["verifier"].get("directory", "tests")
    users = [
        f
        for f in directory.glob("test_*.py")
        if "from tests.integration.hardening import CHECK_IDS, CHECKS" in f.read_text()
    ]
    assert users, f"{scenario.name}: no test runs tests/integration/hardening.py's CHECKS"
