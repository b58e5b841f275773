"""The restore check's textfile metrics and its refusals that need no cluster
(roles/pgbackrest/files/mdus_restore_check.py; the whole check runs in the lab scenario)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.modload import load_module

SCRIPT = Path(__file__).resolve().parents[2] / "roles/pgbackrest/files/mdus_restore_check.py"
check = load_module("mdus_restore_check", SCRIPT)
NOW = 1796000000.0


def _samples(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_a_failure_keeps_the_last_success_of_that_repository(tmp_path: Path) -> None:
    ok = check.Result(1, success=True, label="20261202-010000F", backup_start=NOW - 3600)
    ok.indexes, ok.seconds = 42, {"restore": 10.0, "total": 30.0}
    first = tmp_path / "mdus_restore_check.prom"
    first.write_text(check.metrics([ok, check.Result(2, success=True)], {}, NOW - 86400))
    before = check.previous_success(first)
    assert before == {1: NOW - 86400, 2: NOW - 86400}

    bad = check.Result(1, error="pgbackrest restore failed: checksum mismatch")
    samples = _samples(check.metrics([bad, check.Result(2, success=True)], before, NOW))
    assert samples['mdus_restore_check_success{repo="1"}'] == 0
    assert samples['mdus_restore_check_success{repo="2"}'] == 1
    assert samples['mdus_restore_check_last_success_timestamp_seconds{repo="1"}'] == NOW - 86400
    assert samples['mdus_restore_check_last_success_timestamp_seconds{repo="2"}'] == NOW
    assert samples['mdus_restore_check_last_run_timestamp_seconds{repo="1"}'] == NOW


def test_durations_indexes_and_backup_label_are_published() -> None:
    ok = check.Result(1, success=True, label="20261202-010000F", backup_start=NOW - 3600)
    ok.indexes, ok.seconds = 42, {"restore": 10.0, "recovery": 3.0, "checks": 5.0, "total": 20.0}
    samples = _samples(check.metrics([ok], {}, NOW))
    assert samples['mdus_restore_check_duration_seconds{repo="1",phase="restore"}'] == 10.0
    assert samples['mdus_restore_check_indexes_checked{repo="1"}'] == 42
    key = 'mdus_restore_check_backup_start_timestamp_seconds{repo="1",label="20261202-010000F"}'
    assert samples[key] == NOW - 3600


def test_refuses_to_start_without_room_for_the_copy(tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    (live / "base").write_bytes(b"x" * 4096)
    args = check.parse(
        [
            "--stanza=mdus",
            "--repos",
            "1",
            f"--dir={tmp_path}/scratch",
            f"--live-data={live}",
            "--space-factor=1e12",
            f"--textfile={tmp_path}/m.prom",
        ]
    )
    with pytest.raises(check.CheckFailed, match="not enough space under"):
        check.free_space_check(args)


def test_backup_start_is_read_from_the_restored_backup_label(tmp_path: Path) -> None:
    (tmp_path / "backup_label").write_text(
        "START WAL LOCATION: 0/5000028 (file 000000010000000000000005)\n"
        "CHECKPOINT LOCATION: 0/5000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n"
        "START TIME: 2026-12-02 01:00:00 UTC\nLABEL: pgBackRest backup\n"
    )
    assert check.backup_start(tmp_path) == 1796173200.0
    (tmp_path / "backup_label").write_text("LABEL: something else\n")
    with pytest.raises(check.CheckFailed, match="START TIME"):
        check.backup_start(tmp_path)
