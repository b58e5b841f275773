"""Render a role's variable table for its README from meta/argument_specs.yml.

Usage: python scripts/role_vars_table.py roles/NAME   (rewrites the part of
roles/NAME/README.md between the markers <!-- vars:begin --> and <!-- vars:end -->).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

BEGIN, END = "<!-- vars:begin -->", "<!-- vars:end -->"


def table(role: Path) -> str:
    spec = yaml.safe_load((role / "meta/argument_specs.yml").read_text())
    options = spec["argument_specs"]["main"]["options"]
    rows = ["| variable | type | default | description |", "|---|---|---|---|"]
    for name, option in options.items():
        # a "|" (a Jinja filter) would end the table cell
        default = json.dumps(option.get("default"), separators=(", ", ": ")).replace("|", "\\|")
        description = " ".join(str(option.get("description", "")).split())
        kind = option.get("type", "str")
        if option.get("choices"):
            kind += " (" + ", ".join(map(str, option["choices"])) + ")"
        rows.append(f"| `{name}` | {kind} | `{default}` | {description} |".replace("|`", "| `"))
    return "\n".join(rows)


def main(argv: list[str]) -> int:
    for arg in argv:
        role = Path(arg)
        readme = role / "README.md"
        text = readme.read_text()
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        readme.write_text(f"{head}{BEGIN}\n{table(role)}\n{END}{tail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
