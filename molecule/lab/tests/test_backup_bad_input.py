"""Bad input and failures: a wrong repository passphrase, the repository host down.
Runs after test_backup.py (alphabetical order): it stops and restarts the repository's
TLS server."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from backup_helpers import REPO, archiver, info, switch_wal, wait_archived

from tests.integration.pglab import DATA_DIR, molecule_playbook, pgbackrest, segment_in_repo

CIPHER_FILE = "/etc/pgbackrest/conf.d/cipher.conf"


def test_wrong_passphrase_is_refused_before_it_is_written(repo: Any) -> None:
    """A wrong pgbackrest_cipher_pass stops the run with a clear message and the
    repository keeps working with the passphrase it was created with."""
    before = repo.file(CIPHER_FILE).md5sum
    result = molecule_playbook(
        "playbooks/backup.yml",
        {"pgbackrest_cipher_pass": f"wrong-passphrase-{secrets.token_hex(16)}"},
        limit=REPO,
    )
    assert result.returncode != 0, result.stdout[-3000:]
    assert "Refusing to write pgbackrest_cipher_pass" in result.stdout, result.stdout[-3000:]
    assert "created with another passphrase" in result.stdout
    assert repo.file(CIPHER_FILE).md5sum == before
    assert info(repo)["status"]["code"] == 0


def test_wrong_passphrase_cannot_read_the_repository(repo: Any) -> None:
    # environment variables override conf.d/cipher.conf
    cmd = pgbackrest(repo, "--output=json", "info", env="PGBACKREST_REPO1_CIPHER_PASS=wrong")
    # the error message carries undecryptable bytes: not UTF-8
    stanza = json.loads(cmd.stdout_bytes.decode(errors="replace"), strict=False)[0]
    repos = {r["key"]: r["status"] for r in stanza["repo"]}
    assert repos[1]["code"] == 99, repos
    assert "unable to load info file" in repos[1]["message"]
    assert repos[2]["code"] == 0, "repo2 keeps its own passphrase"


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
