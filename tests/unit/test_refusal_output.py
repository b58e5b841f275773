"""A refused role input reads as one short reason, not the role's whole specification.

Runs ansible-playbook with the repo's ansible.cfg (stdout callback plugins/callback/mdus.py)
against the controller itself: the argument spec refuses before any task of the role runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parents[2]

PLAY = """
- name: Refused input
  hosts: {hosts}
  gather_facts: true
  gather_subset: [min, hardware]
  vars:
    ansible_python_interpreter: "{{{{ ansible_playbook_python }}}}"
  tasks:
    - name: Include the role's {entry} entry point with one bad variable
      ansible.builtin.include_role:
        name: {role}
        tasks_from: {entry}
      vars:
        {variable}: {value}{extra}
"""


def play(
    role: str,
    variable: str,
    value: str,
    *,
    entry: str = "main",
    hosts: str = "all",
    extra: dict[str, str] | None = None,
) -> str:
    """A play that includes one entry point of a role with one variable set (and `extra`
    variables that make the rest of the input valid, as flow-style YAML values)."""
    lines = "".join(f"\n        {name}: {text}" for name, text in (extra or {}).items())
    return PLAY.format(
        role=role, variable=variable, value=value, entry=entry, hosts=hosts, extra=lines
    )


CASES = [
    ("postgresql", "postgresql_workload_profile", "webscale"),
    ("pgbouncer", "pgbouncer_pool_mode", "forever"),
    ("pgbackrest", "pgbackrest_compress_type", "rar"),
]


def run_play(
    playbook: Path, hosts: str = "localhost,"
) -> tuple[subprocess.CompletedProcess[str], str]:
    """ansible-playbook against the controller with the repo's configuration."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env["ANSIBLE_ROLES_PATH"] = str(REPO / "roles")
    env["ANSIBLE_STRATEGY"] = "linear"
    command = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", hosts]
    result = subprocess.run(
        [
            *command,
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(playbook),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    return result, result.stdout + result.stderr


@pytest.mark.parametrize(("role", "variable", "value"), CASES, ids=[c[0] for c in CASES])
def test_argument_spec_refusal_is_short(
    tmp_path: Path, role: str, variable: str, value: str
) -> None:
    playbook = tmp_path / "play.yml"
    playbook.write_text(play(role, variable, value))
    result, output = run_play(playbook)
    assert result.returncode == 2, output
    assert "Validation of arguments failed" in output, output
    assert variable in output, output
    assert "argument_spec_data" not in output, output[:3000]
    assert "validate_args_context" not in output, output[:3000]
    assert len(output.splitlines()) < 80, output


VALIDATE_CASES = [
    ("pgbouncer", "pgbouncer_server_login_retry", "-1"),
    ("pgbouncer", "pgbouncer_query_wait_timeout", "-5"),
    ("pgbouncer", "pgbouncer_server_reset_query", "' '"),
]


@pytest.mark.parametrize(
    ("role", "variable", "value"), VALIDATE_CASES, ids=[c[1] for c in VALIDATE_CASES]
)
def test_value_checks_name_the_variable(
    tmp_path: Path, role: str, variable: str, value: str
) -> None:
    playbook = tmp_path / "play.yml"
    playbook.write_text(play(role, variable, value, entry="validate"))
    result, output = run_play(playbook)
    assert result.returncode == 2, output
    assert variable in output, output


def test_one_reason_for_many_hosts(tmp_path: Path) -> None:
    """Three hosts refused for the same group variable: the reason once, then a line each.
    (Their client networks are given: with none, each host's refusal names the host too.)"""
    playbook = tmp_path / "play.yml"
    networks = {"pgbouncer_hba_entries": "[{database: all, user: all, address: 10.0.0.0/8}]"}
    playbook.write_text(
        play("pgbouncer", "pgbouncer_server_login_retry", "-1", entry="validate", extra=networks)
    )
    result, output = run_play(playbook, hosts="h1,h2,h3,")
    assert result.returncode == 2, output
    # hosts fail in any order: the first one printed carries the reason
    fatals = list(re.finditer(r"fatal: \[(h[123])\]", output))
    assert len(fatals) == 3, output
    first, rest = output[: fatals[1].start()], output[fatals[1].start() :]
    assert "pgbouncer_server_login_retry must be 0 or more" in first, output
    assert "must be 0 or more" not in rest, output
    assert output.count(f"the same reason as [{fatals[0].group(1)}] above") == 2, output
    assert "h1" in output and "h2" in output and "h3" in output, output


def test_every_pgbouncer_refusal_is_named_at_once(tmp_path: Path) -> None:
    """The role's input checks are one task: two refused inputs, both named in one run."""
    playbook = tmp_path / "play.yml"
    others = {
        "pgbouncer_socket_dir": "/var/run/pgbouncer",
        "pgbouncer_databases": "[{name: pgbouncer, dbname: mdus_db, target: primary}]",
    }
    playbook.write_text(
        play("pgbouncer", "pgbouncer_max_prepared_statements", "-1", entry="validate", extra=others)
    )
    result, output = run_play(playbook)
    assert result.returncode == 2, output
    assert "pgbouncer_max_prepared_statements must be 0 (off) or positive" in output, output
    assert "pgbouncer_socket_dir is '/var/run/pgbouncer'" in output, output
    assert "must not be 'pgbouncer' (the admin console)" in output, output
