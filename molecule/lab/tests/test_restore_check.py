"""The restore check (pgbackrest role, mdus-restore-check.service on the replica): the
newest backup of both repositories restores and passes amcheck, row counts and the
newest-row check; a damaged file in repo1's newest backup makes repo1 fail (repo2 still
passes), PgBackRestRestoreCheckFailed fires in Prometheus for repo1, and the check passes
again once the file is repaired. Runs after the pgBackRest and monitoring tests."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from backup_helpers import backups_in, info
from test_monitoring import MON, promql, wait_until

from tests.integration.pglab import REPO_PATH, STANZA, node

PROM_FILE = "/var/lib/prometheus/node-exporter/mdus_restore_check.prom"
ALERT = "PgBackRestRestoreCheckFailed"


def metric(host: Any, name: str, repo: int) -> float:
    text = host.file(PROM_FILE).content_string
    found = re.search(rf'^mdus_restore_check_{name}{{repo="{repo}"[^}}]*}} (\S+)$', text, re.M)
    assert found, f"no {name} for repo{repo} in {PROM_FILE}:\n{text}"
    return float(found.group(1))


def run_check(host: Any) -> tuple[int, dict[int, dict[str, Any]]]:
    cmd = host.run("systemctl start mdus-restore-check.service")
    journal = host.run(
        "journalctl -u mdus-restore-check.service -o cat --since=-10min | grep '^{' | tail -n 2"
    ).stdout
    lines = [json.loads(line) for line in journal.splitlines() if line.strip()]
    return cmd.rc, {line["repo"]: line for line in lines}


@pytest.fixture()
def damaged_repo1_backup(repo: Any) -> Iterator[str]:
    """Overwrite 64 bytes in the middle of the largest file stored in repo1's newest backup
    (an incremental backup stores only what changed, but always global/pg_control);
    repaired afterwards."""
    label = backups_in(info(repo), 1)[-1]["label"]
    found = repo.run(
        f"find {REPO_PATH}/backup/{STANZA}/{label}/pg_data -type f"
        " -printf '%s %p\\n' | sort -n | tail -n 1"
    ).stdout.split()
    assert len(found) == 2, f"no file stored in backup {label}"
    size, path = int(found[0]), found[1]
    repo.run_test("cp -p %s /root/restore-check-original", path)
    repo.run_test(
        "dd if=/dev/urandom of=%s bs=1 count=64 seek=%s conv=notrunc status=none",
        path,
        str(size // 2),
    )
    yield label
    repo.run_test("cp -p /root/restore-check-original %s", path)


def test_restore_check_passes_for_both_repositories(replica: Any) -> None:
    assert replica.service("mdus-restore-check.timer").is_enabled
    rc, runs = run_check(replica)
    assert rc == 0, runs
    for repo in (1, 2):
        assert runs[repo]["success"], runs[repo]
        assert runs[repo]["indexes_checked"] >= 20, runs[repo]
        assert metric(replica, "success", repo) == 1
    print("restore check:", json.dumps(runs))


def test_damaged_backup_fails_the_check_and_alerts(replica: Any, damaged_repo1_backup: str) -> None:
    passed_at = metric(replica, "last_success_timestamp_seconds", 1)
    rc, runs = run_check(replica)
    assert rc != 0, runs
    assert not runs[1]["success"] and runs[1]["error"], runs[1]
    assert runs[2]["success"], runs[2]
    assert metric(replica, "success", 1) == 0
    assert metric(replica, "last_success_timestamp_seconds", 1) == passed_at
    mon = node(MON)
    expr = f'ALERTS{{alertname="{ALERT}",alertstate="firing"}}'
    firing = wait_until(
        "the restore check alert for repo1",
        lambda: [s["metric"]["repo"] for s in promql(mon, expr)] == ["1"],
        timeout=120,
        step=5,
    )
    assert firing
    print("damaged backup:", runs[1]["error"])


def test_restore_check_passes_again_after_the_repair(replica: Any) -> None:
    rc, runs = run_check(replica)
    assert rc == 0 and runs[1]["success"], runs
