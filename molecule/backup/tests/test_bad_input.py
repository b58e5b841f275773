"""Bad input and failures: a wrong repository passphrase, the repository host down.
Runs after test_backup.py (alphabetical order): it stops and restarts the repository's
TLS server."""

from __future__ import annotations

import time
from typing import Any

from backup_helpers import (
    REPO,
    archiver,
    pgbackrest,
    segment_in_repo,
    switch_wal,
    wait_archived,
)

from tests.integration.pglab import DATA_DIR


def test_wrong_passphrase_fails_with_a_clear_message(repo: Any) -> None:
    # environment variables override pgbackrest.conf / conf.d/cipher.conf
    cmd = pgbackrest(repo, "info", env="PGBACKREST_REPO1_CIPHER_PASS=not-the-passphrase")
    output = (cmd.stdout + cmd.stderr).lower()
    assert "status: error" in output or cmd.rc != 0, output
    assert any(word in output for word in ("cipher", "decrypt", "crypto")), output


def test_unreachable_repository_keeps_the_wal(primary: Any, repo: Any) -> None:
    """Repository host down: archive-push fails with a clear message, PostgreSQL keeps the
    segment in pg_wal and archives it once the repository is back."""
    repo.run("systemctl stop pgbackrest.service")
    try:
        cmd = pgbackrest(primary, "--io-timeout=5", "--archive-timeout=10", "check")
        message = cmd.stdout + cmd.stderr
        assert cmd.rc != 0
        assert REPO in message and "8432" in message, message
        _, failed_before, _ = archiver(primary)
        segment = switch_wal(primary)
        deadline = time.monotonic() + 120
        while archiver(primary)[1] == failed_before:
            assert time.monotonic() < deadline, "archive_command did not fail within 120 s"
            time.sleep(1)
        assert archiver(primary)[2] < segment
        assert primary.file(f"{DATA_DIR}/pg_wal/{segment}").exists
        assert primary.file(f"{DATA_DIR}/pg_wal/archive_status/{segment}.ready").exists
        assert not segment_in_repo(repo, segment)
    finally:
        repo.run("systemctl start pgbackrest.service")
    # back: the kept segment reaches the repository (a new switch wakes the archiver)
    wait_archived(primary, switch_wal(primary), timeout=150)
    assert segment_in_repo(repo, segment)
