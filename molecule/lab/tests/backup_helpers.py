"""Helpers of the lab scenario's pgBackRest tests (pgBackRest on the lab containers)."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.integration.pglab import REPO2_PATH, REPO_PATH, pgbackrest, psql

PRIMARY = "mdus-lab-pg1"
REPLICA = "mdus-lab-pg2"
REPO = "mdus-lab-repo"
REPO_PATHS = (REPO_PATH, REPO2_PATH)
PG_BIN = "/usr/lib/postgresql/15/bin"


def info(host: Any) -> dict[str, Any]:
    """The stanza's entry of `pgbackrest info --output=json`."""
    cmd = pgbackrest(host, "--output=json", "info")
    assert cmd.rc == 0, cmd.stderr
    return json.loads(cmd.stdout)[0]


def archiver(host: Any) -> tuple[int, int, str]:
    """archived_count, failed_count, last_archived_wal of pg_stat_archiver."""
    row = psql(
        host,
        "SELECT archived_count, failed_count, coalesce(last_archived_wal, '') "
        "FROM pg_stat_archiver",
    )
    archived, failed, last = row.split("|")
    return int(archived), int(failed), last


def switch_wal(host: Any) -> str:
    """Close the current WAL segment (after writing to it) and return its name."""
    psql(host, "CREATE TABLE IF NOT EXISTS verify_backup_switch (at timestamptz)")
    psql(host, "INSERT INTO verify_backup_switch VALUES (now())")
    return psql(host, "SELECT pg_walfile_name(pg_switch_wal())")


def wait_archived(host: Any, segment: str, timeout: float = 90) -> None:
    """Wait until PostgreSQL reports the segment (or a later one) archived."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        last = archiver(host)[2]
        if last >= segment:
            return
        time.sleep(0.5)
    raise AssertionError(f"{segment} not archived within {timeout} s (last archived: {last!r})")


def backups_in(stanza: dict[str, Any], repo_key: int) -> list[dict[str, Any]]:
    """The backups of `pgbackrest info` that live in repository repo_key."""
    return [b for b in stanza["backup"] if b["database"]["repo-key"] == repo_key]
