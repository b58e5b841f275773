"""A refused role input reads as one short reason, not the role's whole specification.

Runs ansible-playbook with the repo's ansible.cfg (stdout callback plugins/callback/mdus.py)
against the controller itself: the argument spec refuses before any task of the role runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]

PLAY = """
- name: Refused input
  hosts: localhost
  gather_facts: true
  gather_subset: [min, hardware]
  vars:
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
  tasks:
    - name: Include the role with one bad variable
      ansible.builtin.include_role:
        name: {role}
      vars:
        {variable}: {value}
"""

CASES = [
    ("postgresql", "postgresql_workload_profile", "webscale"),
    ("pgbouncer", "pgbouncer_pool_mode", "forever"),
    ("pgbackrest", "pgbackrest_compress_type", "rar"),
]


@pytest.mark.parametrize(("role", "variable", "value"), CASES, ids=[c[0] for c in CASES])
def test_argument_spec_refusal_is_short(
    tmp_path: Path, role: str, variable: str, value: str
) -> None:
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY.format(role=role, variable=variable, value=value))
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env["ANSIBLE_ROLES_PATH"] = str(REPO / "roles")
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,"]
    result = subprocess.run(
        [*command, "-c", "local", str(playbook)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Validation of arguments failed" in output, output
    assert variable in output, output
    assert "argument_spec_data" not in output, output[:3000]
    assert "validate_args_context" not in output, output[:3000]
    assert len(output.splitlines()) < 80, output
