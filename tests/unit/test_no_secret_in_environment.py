"""No secret reaches a host through a task's or play's `environment`.

Ansible's own strategy builds the remote command line with the environment in it
(`VAR=value /usr/bin/python3 ...`) and prints that line at -vvv, whatever `no_log` says;
Mitogen does not, so a -vvv log of the lab under Mitogen cannot show the leak. A secret
goes on stdin or into a 0600 file instead. This test reads every task file, handler file
and playbook and refuses an environment value that templates a secret-looking variable.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SECRET = re.compile(r"\{\{[^}]*(pass|password|secret|token|cipher|private)[^}]*\}\}", re.I)
FILES = sorted(
    [
        *REPO.glob("roles/*/tasks/*.yml"),
        *REPO.glob("roles/*/handlers/*.yml"),
        *REPO.glob("playbooks/**/*.yml"),
        REPO / "site.yml",
    ]
)


class _Loader(yaml.SafeLoader):
    """SafeLoader that accepts Ansible's !vault and !unsafe tags."""


_Loader.add_multi_constructor("!", lambda loader, suffix, node: None)


def environments(node: Any) -> Iterator[tuple[str, str]]:
    """(variable, value) of every `environment` mapping anywhere in a YAML document."""
    if isinstance(node, dict):
        env = node.get("environment")
        if isinstance(env, dict):
            yield from ((str(k), str(v)) for k, v in env.items())
        elif isinstance(env, str):
            yield ("environment", env)
        for value in node.values():
            yield from environments(value)
    elif isinstance(node, list):
        for item in node:
            yield from environments(item)


def test_the_files_are_found() -> None:
    assert len(FILES) > 50, FILES


@pytest.mark.parametrize("path", FILES, ids=[str(f.relative_to(REPO)) for f in FILES])
def test_no_secret_in_an_environment(path: Path) -> None:
    document = yaml.load(path.read_text(), Loader=_Loader)
    leaks = [f"{k}: {v}" for k, v in environments(document) if SECRET.search(v)]
    assert not leaks, f"{path.relative_to(REPO)} passes a secret in an environment: {leaks}"


def test_the_check_sees_a_secret() -> None:
    task = [{"name": "x", "environment": {"PGPASSWORD": "{{ mdus_app_password }}"}}]
    assert [v for _, v in environments(task) if SECRET.search(v)] == ["{{ mdus_app_password }}"]
