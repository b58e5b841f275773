"""mdus-health (files/healthcheck/mdus_health.py) against a throw-away PostgreSQL 15.

Uses the cluster helper of tests/schema (initdb as the postgres OS user, unix socket in
a temporary directory). Covers a healthy server, induced problems (a long query, a lock
wait, connection usage, an old backup, an unreachable server) with their exit codes and
reasons, the pg_monitor-only login, stats and usage errors.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests/schema"))
from pgcluster import PgCluster, start_cluster  # noqa: E402

CLI = REPO / "files/healthcheck/mdus_health.py"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    pg = start_cluster()
    try:
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            conn.execute("CREATE ROLE mdus_monitor LOGIN IN ROLE pg_monitor")
            conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body text)")
            conn.execute("CREATE INDEX docs_body_idx ON docs (body)")
            conn.execute("INSERT INTO docs SELECT g, 'x' FROM generate_series(1, 1000) g")
        yield pg
    finally:
        pg.stop()


def health(dsn: str, *args: str) -> tuple[int, dict[str, Any]]:
    cmd = [sys.executable, str(CLI), "--dsn", dsn, "--json", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def wait_for(conn: psycopg.Connection[Any], sql: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if conn.execute(sql).fetchone()[0]:  # type: ignore[index]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for: {sql}")


def test_healthy_server(cluster: PgCluster) -> None:
    rc, report = health(cluster.dsn(), "check")
    assert rc == 0, report
    assert report["status"] == "healthy"
    assert report["reasons"] == []
    assert report["connections"]["max"] == 100
    assert report["connections"]["available"] == 97  # minus superuser_reserved_connections
    assert report["replication"]["is_replica"] is False
    assert report["archiver"]["archive_mode"] == "on"  # the test cluster archives to /bin/true
    assert {f["check"] for f in report["findings"]} >= {
        "connections",
        "cache",
        "long_queries",
        "lock_waits",
        "replication",
        "archiver",
    }


def test_pg_monitor_login_is_enough(cluster: PgCluster) -> None:
    rc, report = health(cluster.dsn(user="mdus_monitor"), "check")
    assert rc == 0, report
    assert report["status"] == "healthy"


def test_long_running_query_is_unhealthy(cluster: PgCluster) -> None:
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:

        def sleep() -> None:
            # cancelled at the end of the test
            with (
                psycopg.connect(cluster.dsn(), autocommit=True) as conn,
                contextlib.suppress(psycopg.errors.QueryCanceled),
            ):
                conn.execute("SELECT pg_sleep(20)")

        sleeper = threading.Thread(target=sleep, daemon=True)
        sleeper.start()
        wait_for(
            admin,
            "SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(20)%'"
            " AND state = 'active' AND now() - query_start > interval '1.5 s'",
        )
        try:
            rc, report = health(
                cluster.dsn(user="mdus_monitor"), "check", "--long-query-seconds", "1"
            )
            assert rc == 2, report
            assert report["status"] == "unhealthy"
            assert any(r.startswith("long_queries:") for r in report["reasons"]), report
            assert report["long_queries"][0]["seconds"] > 1
            # the default threshold (5 minutes) is not reached
            rc, report = health(cluster.dsn(), "check")
            assert rc == 0, report
        finally:
            admin.execute(
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity"
                " WHERE query LIKE 'SELECT pg_sleep(20)%' AND pid <> pg_backend_pid()"
            )
    sleeper.join(10)


def test_lock_wait_is_unhealthy(cluster: PgCluster) -> None:
    with (
        psycopg.connect(cluster.dsn()) as holder,
        psycopg.connect(cluster.dsn(), autocommit=True) as admin,
    ):
        holder.execute("LOCK TABLE docs IN ACCESS EXCLUSIVE MODE")
        holder_pid = holder.info.backend_pid

        def blocked() -> None:
            with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
                conn.execute("SELECT count(*) FROM docs").fetchall()

        waiter = threading.Thread(target=blocked, daemon=True)
        waiter.start()
        wait_for(
            admin,
            "SELECT count(*) > 0 FROM pg_locks WHERE NOT granted"
            " AND now() - waitstart > interval '1.5 s'",
        )
        rc, report = health(cluster.dsn(user="mdus_monitor"), "check", "--lock-wait-seconds", "1")
        assert rc == 2, report
        reason = next(r for r in report["reasons"] if r.startswith("lock_waits:"))
        assert f"blocked by [{holder_pid}]" in reason
        holder.rollback()
        waiter.join(10)
    rc, report = health(cluster.dsn(), "check", "--lock-wait-seconds", "1")
    assert rc == 0, report


def test_connection_usage_is_degraded(cluster: PgCluster) -> None:
    rc, report = health(cluster.dsn(), "check", "--connections-warning", "0.001")
    assert rc == 1, report
    assert report["status"] == "degraded"
    assert any(r.startswith("connections:") for r in report["reasons"])


def test_old_backup_is_degraded(cluster: PgCluster, tmp_path: Path) -> None:
    metrics = tmp_path / "pgbackrest.prom"
    old = time.time() - 30 * 3600
    metrics.write_text(
        f'mdus_pgbackrest_last_backup_timestamp_seconds{{stanza="main",type="any"}} {old}\n'
        f'mdus_pgbackrest_last_backup_timestamp_seconds{{stanza="main",type="full"}} {old}\n'
    )
    rc, report = health(cluster.dsn(), "check", "--backup-metrics", str(metrics))
    assert rc == 1, report
    assert any(r.startswith("backup: last backup 30.0 h old") for r in report["reasons"]), report
    assert report["last_backup"]["stanza"] == "main"


def test_unreachable_server_is_unhealthy(tmp_path: Path) -> None:
    rc, report = health(f"host={tmp_path} port=1 dbname=postgres user=nobody", "check")
    assert rc == 2
    assert report["status"] == "unhealthy"
    assert report["reasons"][0].startswith("connect: cannot connect")


def test_stats_sizes_and_unused_indexes(cluster: PgCluster) -> None:
    rc, data = health(cluster.dsn(), "stats")
    assert rc == 0
    assert "postgres" in {d["datname"] for d in data["databases"]}
    assert "docs" in {t["relname"] for t in data["tables"]}
    # the primary key is never reported; the never-used secondary index is
    assert [i["indexrelname"] for i in data["unused_indexes"]] == ["docs_body_idx"]


def test_human_output_and_usage_errors(cluster: PgCluster) -> None:
    proc = subprocess.run(
        [sys.executable, str(CLI), "--dsn", cluster.dsn(), "check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("status: HEALTHY")
    assert "long_queries" in proc.stdout
    proc = subprocess.run(
        [sys.executable, str(CLI), "check", "--no-such-option"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 3  # UNKNOWN, not CRITICAL


def test_configuration_file_sets_dsn_and_thresholds(cluster: PgCluster, tmp_path: Path) -> None:
    """The role renders /etc/mdus-health.json from its variables; the CLI reads it (the
    alert thresholds reach it), flags still override, unknown names are refused."""
    config = tmp_path / "health.json"
    config.write_text(
        json.dumps({"dsn": cluster.dsn(), "thresholds": {"connections_warning": "0.001"}})
    )
    env = {**os.environ, "MDUS_HEALTH_CONFIG": str(config)}
    env.pop("MDUS_HEALTH_DSN", None)
    run = [sys.executable, str(CLI), "--json", "check"]
    proc = subprocess.run(run, capture_output=True, text=True, timeout=60, env=env, check=False)
    report = json.loads(proc.stdout)
    assert proc.returncode == 1 and any("connections" in r for r in report["reasons"]), report
    flag = [*run, "--connections-warning", "0.99"]
    proc = subprocess.run(flag, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert not any("connections" in r for r in json.loads(proc.stdout)["reasons"]), proc.stdout
    config.write_text(json.dumps({"thresholds": {"conections_warning": 0.5}}))
    proc = subprocess.run(run, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert proc.returncode == 3 and "unknown thresholds conections_warning" in proc.stderr
