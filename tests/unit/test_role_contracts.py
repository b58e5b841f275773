"""Every role documents its variables the same way in three places.

defaults/main.yml, meta/argument_specs.yml (entry point main) and README.md must list
the same public variables, each prefixed with the role name, and the spec defaults must
equal defaults/main.yml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROLES = sorted(p.parent for p in (Path(__file__).parents[2] / "roles").glob("*/tasks"))


def _load(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) or {}


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_role_variables_documented_and_specified(role: Path) -> None:
    defaults = _load(role / "defaults/main.yml")
    spec = _load(role / "meta/argument_specs.yml")["argument_specs"]["main"]["options"]
    readme = (role / "README.md").read_text()
    for name in defaults:
        assert name.startswith(f"{role.name}_"), f"{name} lacks the {role.name}_ prefix"
        assert name in spec, f"{name} missing from meta/argument_specs.yml"
        assert spec[name].get("default") == defaults[name], f"{name}: spec default differs"
        assert f"`{name}`" in readme, f"{name} missing from README.md"
    for name in spec:
        assert name in defaults, f"{name} is in argument_specs but not in defaults/main.yml"


@pytest.mark.parametrize("role", ROLES, ids=[r.name for r in ROLES])
def test_role_defaults_are_commented(role: Path) -> None:
    lines = (role / "defaults/main.yml").read_text().splitlines()
    for index, line in enumerate(lines):
        if line.startswith(f"{role.name}_"):
            above = index - 1
            while above > 0 and lines[above].startswith(f"{role.name}_"):
                above -= 1  # a group of variables under one comment
            assert lines[above].startswith("#"), f"{line.split(':')[0]} has no comment above"
