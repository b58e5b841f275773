"""Check mode on a converged host: no failure, nothing changed; with one pending setting
it shows exactly that diff and leaves the host as it was."""

from __future__ import annotations

import re
from typing import Any

from tests.integration.pglab import CONF_DIR, changed_tasks, molecule_playbook, psql


def _recap(output: str) -> list[tuple[str, str, str]]:
    return re.findall(
        r"^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", output, re.M
    )


def test_check_mode_on_a_converged_host_changes_nothing() -> None:
    run = molecule_playbook("site.yml", {}, options=("--check", "--diff"))
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert _recap(output) and all(c == "0" and f == "0" for _, c, f in _recap(output)), (
        changed_tasks(output)
    )


def test_check_mode_shows_one_pending_setting_and_applies_nothing(host: Any) -> None:
    before = host.file(f"{CONF_DIR}/postgresql.conf").content_string
    run = molecule_playbook(
        "site.yml", {"postgresql_log_min_duration_statement": "2s"}, options=("--check", "--diff")
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert "-log_min_duration_statement = '1s'" in output
    assert "+log_min_duration_statement = '2s'" in output
    assert [t for t in changed_tasks(output) if "Render" in t] == [
        "postgresql : Render postgresql.conf -> " + host.backend.get_hostname()
    ]
    assert host.file(f"{CONF_DIR}/postgresql.conf").content_string == before
    assert psql(host, "SHOW log_min_duration_statement") == "1s"
