"""Behaviour of schema/migrate.py against a throw-away cluster."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from conftest import MIGRATE, popen_migrate, run_migrate, schema_dump, write_migration

from tests.modload import load_module

ALL = ["001", "002", "003", "004", "005", "006"]


def load_runner() -> ModuleType:
    return load_module("mdus_migrate", MIGRATE)


def versions(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        if not conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0]:
            return []
        rows = conn.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    return [row[0] for row in rows]


def scalar(dsn: str, query: str, params: tuple[Any, ...] = ()) -> Any:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(query, params).fetchone()
    return row[0] if row else None


# --------------------------------------------------------------------------- file parsing


def test_checksum_ignores_line_ends_and_bom(tmp_path: Path) -> None:
    runner = load_runner()
    body = "-- migrate:up\nCREATE TABLE a (id int);\n-- migrate:down\nDROP TABLE a;\n"
    (tmp_path / "001_lf.sql").write_bytes(body.encode())
    (tmp_path / "002_crlf.sql").write_bytes(("\ufeff" + body.replace("\n", "\r\n")).encode())
    (tmp_path / "003_edit.sql").write_bytes(body.replace("int", "bigint").encode())
    lf, crlf, edited = (runner.parse_migration(p) for p in sorted(tmp_path.iterdir()))
    assert lf.checksum == crlf.checksum
    assert lf.checksum != edited.checksum
    assert lf.up.strip() == "CREATE TABLE a (id int);"
    assert lf.down is not None and lf.down.strip() == "DROP TABLE a;"


def test_markers(tmp_path: Path) -> None:
    runner = load_runner()
    path = tmp_path / "001_x.sql"
    path.write_text(
        "-- migrate:no-transaction\n-- migrate:lock-timeout 9s\n-- migrate:up\n"
        "CREATE INDEX CONCURRENTLY i ON t (a);\n-- migrate:down\n-- irreversible\n"
    )
    migration = runner.parse_migration(path)
    assert migration.transactional is False
    assert migration.lock_timeout == "9s"
    assert migration.down is None  # only a comment: no down section
    path.write_text("-- migrate:up\nSELECT 1;\n-- migrate:sideways\n")
    with pytest.raises(runner.MigrationError, match="unknown marker"):
        runner.parse_migration(path)
    path.write_text("-- migrate:down\nSELECT 1;\n-- migrate:up\nSELECT 1;\n")
    with pytest.raises(runner.MigrationError, match="misplaced"):
        runner.parse_migration(path)


def test_shipped_migrations_have_down_and_do_not_record_themselves() -> None:
    runner = load_runner()
    migrations = runner.load_migrations(MIGRATE.parent / "migrations")
    assert [m.version for m in migrations] == ALL
    for migration in migrations:
        assert migration.down is not None
        text = migration.path.read_text().upper()
        assert "INSERT INTO SCHEMA_MIGRATIONS" not in text
        # No transaction control statement (COMMIT inside a procedure body is fine: 005's
        # run_partition_maintenance commits per partition set when it is CALLed).
        for section in (migration.up, migration.down or ""):
            statements = runner.split_statements(section)
            assert [runner.transaction_control(s) for s in statements] == [None] * len(statements)


# --------------------------------------------------------------------------- CLI contract


def test_usage_error_is_not_changed(empty_db: str) -> None:
    result = run_migrate(empty_db, "migrate", "--no-such-flag")
    assert result.rc == 1
    help_text = run_migrate(empty_db, "--help")
    assert help_text.rc == 0
    assert "exit codes" in help_text.stdout and "2  changed" in help_text.stdout


def test_connection_failure_is_an_error(tmp_path: Path) -> None:
    result = run_migrate(f"host={tmp_path} port=1 dbname=x connect_timeout=2", "status")
    assert result.rc == 1
    assert "cannot connect" in result.stderr


def test_migrate_all_then_nothing_to_do(empty_db: str) -> None:
    first = run_migrate(empty_db, "migrate", "--json")
    assert first.rc == 2, first.stderr
    report = first.json
    assert report["changed"] is True
    assert [step["version"] for step in report["applied"]] == ALL
    assert all(isinstance(step["ms"], int) and step["attempts"] == 1 for step in report["applied"])
    assert report["pending"] == [] and report["drift"] == [] and report["current"] == ALL[-1]

    second = run_migrate(empty_db, "migrate", "--json")
    assert second.rc == 0, second.stderr
    assert second.json["changed"] is False and second.json["applied"] == []

    status = run_migrate(empty_db, "status", "--json")
    assert status.rc == 0
    assert [m["state"] for m in status.json["migrations"]] == ["applied"] * len(ALL)
    with psycopg.connect(empty_db) as conn:
        rows = conn.execute(
            "SELECT checksum_algorithm, applied_by, success, execution_ms >= 0, length(checksum)"
            " FROM schema_migrations"
        ).fetchall()
        log = conn.execute("SELECT action, count(*) FROM schema_migrations_log GROUP BY 1")
        assert dict(log.fetchall()) == {"migrate": len(ALL)}
    assert rows == [("sha256:lf:no-bom", "postgres", True, True, 64)] * len(ALL)


def test_restore_point_before_every_change(empty_db: str) -> None:
    """On a primary that archives WAL, migrate and rollback each mark the WAL first with a
    restore point named after the version they start from; nothing to do makes none."""
    first = run_migrate(empty_db, "migrate", "--target", "002", "--json")
    assert first.rc == 2, first.stderr
    point = first.json["restore_point"]
    assert re.fullmatch(r"mdus_before_000_\d{8}T\d{6}Z", point["name"]), point
    assert re.fullmatch(r"[0-9A-F]+/[0-9A-F]+", point["lsn"]), point
    assert scalar(empty_db, "SELECT pg_current_wal_lsn() >= %s::pg_lsn", (point["lsn"],))

    second = run_migrate(empty_db, "migrate")
    assert second.rc == 2 and "restore point mdus_before_002_" in second.stdout, second.stdout
    assert run_migrate(empty_db, "migrate", "--json").json["restore_point"] is None
    assert run_migrate(empty_db, "migrate", "--dry-run", "--json").json["restore_point"] is None

    back = run_migrate(empty_db, "rollback", "--target", "003", "--json")
    assert back.rc == 2 and back.json["restore_point"]["name"].startswith("mdus_before_006_")
    bare = run_migrate(empty_db, "rollback", "--target", "002", "--no-restore-point", "--json")
    assert bare.rc == 2 and bare.json["restore_point"] is None


def test_status_human_output(migrated_db: str) -> None:
    result = run_migrate(migrated_db, "status", "--verbose")
    assert result.rc == 0
    assert "001      initial_schema" in result.stdout
    assert f"{len(ALL)} applied" in result.stdout


def test_dry_run_changes_nothing(empty_db: str) -> None:
    result = run_migrate(empty_db, "migrate", "--dry-run", "--json")
    assert result.rc == 2
    assert [s["version"] for s in result.json["applied"]] == ALL
    assert versions(empty_db) == []
    assert scalar(empty_db, "SELECT to_regclass('documents')") is None


def test_migrate_to_target(empty_db: str) -> None:
    result = run_migrate(empty_db, "migrate", "--target", "002_add_enhanced_features", "--json")
    assert result.rc == 2, result.stderr
    assert versions(empty_db) == ["001", "002"]
    assert result.json["pending"] == [
        "003_add_user_preferences",
        "004_bind_app_user_to_transaction",
        "005_audit_privacy_hardening",
        "006_owner_on_child_rows",
    ]
    assert run_migrate(empty_db, "migrate", "--target", "002_wrong_name").rc == 1


@pytest.mark.parametrize("target", ["002", "001", "0"])
def test_rollback_and_reapply_gives_identical_schema(
    new_db: Callable[..., str], template_db: str, target: str
) -> None:
    dsn = new_db(template=template_db)
    before = schema_dump(dsn)
    confirm = ["--yes-destroy-all"] if target == "0" else []
    down = run_migrate(dsn, "rollback", "--target", target, *confirm, "--json")
    assert down.rc == 2, down.stderr
    kept = [v for v in ALL if int(v) <= int(target)]
    assert versions(dsn) == kept
    assert [s["direction"] for s in down.json["applied"]] == ["down"] * (len(ALL) - len(kept))
    if target == "0":
        tables = scalar(
            dsn,
            "SELECT array_agg(relname::text ORDER BY relname) FROM pg_class"
            " WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p', 'v')"
            " AND relname NOT LIKE 'pg_stat_statements%%'",
        )
        assert tables == ["schema_migrations", "schema_migrations_log"]
    up = run_migrate(dsn, "migrate")
    assert up.rc == 2, up.stderr
    assert schema_dump(dsn) == before


def test_rollback_keeps_data_of_partitioned_tables(db: psycopg.Connection[Any]) -> None:
    dsn = db.info.dsn
    db.execute("INSERT INTO audit_logs (action, table_name, record_id) VALUES ('LOGIN', 'x', '1')")
    assert run_migrate(dsn, "rollback", "--target", "001").rc == 2
    assert scalar(dsn, "SELECT count(*) FROM audit_logs WHERE table_name = 'x'") == 1
    assert scalar(dsn, "SELECT relkind::text FROM pg_class WHERE relname = 'audit_logs'") == "r"
    assert run_migrate(dsn, "migrate").rc == 2
    assert scalar(dsn, "SELECT count(*) FROM audit_logs WHERE table_name = 'x'") == 1
    assert scalar(dsn, "SELECT relkind::text FROM pg_class WHERE relname = 'audit_logs'") == "p"


def test_rollback_refuses_step_without_down(empty_db: str, tmp_path: Path) -> None:
    write_migration(tmp_path, "001_a.sql", "CREATE TABLE a (id int);", "DROP TABLE a;")
    write_migration(tmp_path, "002_b.sql", "CREATE TABLE b (id int);")
    write_migration(tmp_path, "003_c.sql", "CREATE TABLE c (id int);", "DROP TABLE c;")
    assert run_migrate(empty_db, "migrate", directory=tmp_path).rc == 2
    result = run_migrate(empty_db, "rollback", "--target", "001", directory=tmp_path)
    assert result.rc == 1
    assert "002_b" in result.stderr and "nothing was rolled back" in result.stderr
    assert versions(empty_db) == ["001", "002", "003"]
    assert scalar(empty_db, "SELECT to_regclass('c')::text") == "c"
    # Rolling back only the step that has a down section is fine.
    assert run_migrate(empty_db, "rollback", "--target", "002", directory=tmp_path).rc == 2
    assert versions(empty_db) == ["001", "002"]


def test_drift_stops_the_run_and_repair_is_logged(empty_db: str, tmp_path: Path) -> None:
    first = write_migration(tmp_path, "001_a.sql", "CREATE TABLE a (id int);", "DROP TABLE a;")
    assert run_migrate(empty_db, "migrate", directory=tmp_path).rc == 2
    # Line ends and a BOM are not an edit.
    text = first.read_text()
    first.write_bytes(("\ufeff" + text.replace("\n", "\r\n")).encode())
    assert run_migrate(empty_db, "migrate", directory=tmp_path).rc == 0
    # A real edit is.
    first.write_text(text.replace("id int", "id bigint"))
    write_migration(tmp_path, "002_b.sql", "CREATE TABLE b (id int);", "DROP TABLE b;")
    result = run_migrate(empty_db, "migrate", "--json", directory=tmp_path)
    assert result.rc == 3
    assert result.json["drift"][0]["problem"] == "checksum"
    assert "001_a.sql changed after it was applied" in result.stderr
    assert "repair" in result.stderr
    assert versions(empty_db) == ["001"]  # 002 was not applied
    status = run_migrate(empty_db, "status", "--json", directory=tmp_path)
    assert status.rc == 3 and status.json["migrations"][0]["state"] == "checksum"

    repair = run_migrate(empty_db, "repair", directory=tmp_path)
    assert repair.rc == 2, repair.stderr
    with psycopg.connect(empty_db) as conn:
        action, details = conn.execute(
            "SELECT action, details FROM schema_migrations_log ORDER BY id DESC LIMIT 1"
        ).fetchone()
    assert action == "repair" and details["problem"] == "checksum"
    assert details["old_checksum"] != details["new_checksum"]
    assert run_migrate(empty_db, "repair", directory=tmp_path).rc == 0
    assert run_migrate(empty_db, "migrate", directory=tmp_path).rc == 2
    assert versions(empty_db) == ["001", "002"]


def test_missing_file_is_drift(empty_db: str, tmp_path: Path) -> None:
    write_migration(tmp_path, "001_a.sql", "CREATE TABLE a (id int);")
    second = write_migration(tmp_path, "002_b.sql", "CREATE TABLE b (id int);")
    assert run_migrate(empty_db, "migrate", directory=tmp_path).rc == 2
    second.unlink()
    result = run_migrate(empty_db, "migrate", "--json", directory=tmp_path)
    assert result.rc == 3 and result.json["drift"][0]["problem"] == "missing"


def test_out_of_order_version_is_refused(empty_db: str, tmp_path: Path) -> None:
    write_migration(tmp_path, "001_a.sql", "CREATE TABLE a (id int);")
    write_migration(tmp_path, "003_c.sql", "CREATE TABLE c (id int);")
    assert run_migrate(empty_db, "migrate", directory=tmp_path).rc == 2
    write_migration(tmp_path, "002_b.sql", "CREATE TABLE b (id int);")
    result = run_migrate(empty_db, "migrate", directory=tmp_path)
    assert result.rc == 3 and "out of order" in result.stderr
    assert scalar(empty_db, "SELECT to_regclass('b')") is None


def test_failed_migration_leaves_no_trace(empty_db: str, tmp_path: Path) -> None:
    write_migration(tmp_path, "001_a.sql", "CREATE TABLE a (id int);")
    assert run_migrate(empty_db, "migrate", directory=tmp_path).rc == 2
    before = schema_dump(empty_db)
    write_migration(
        tmp_path,
        "002_half.sql",
        "CREATE TABLE b (id int);\nINSERT INTO b VALUES (1);\nALTER TABLE a ADD COLUMN x int;\n"
        "SELECT 1 / 0;\nCREATE TABLE c (id int);",
    )
    result = run_migrate(empty_db, "migrate", "--json", directory=tmp_path)
    assert result.rc == 1
    assert "002_half" in result.json["error"] and "division by zero" in result.json["error"]
    assert "rolled back" in result.stderr
    assert versions(empty_db) == ["001"]
    assert schema_dump(empty_db) == before
    # The failure is logged after the rollback, in a transaction of its own.
    with psycopg.connect(empty_db) as conn:
        log = conn.execute("SELECT action, version FROM schema_migrations_log ORDER BY id")
        assert log.fetchall() == [("migrate", "001"), ("failed", "002")]


def test_two_runners_at_once(empty_db: str, tmp_path: Path) -> None:
    write_migration(tmp_path, "001_slow.sql", "CREATE TABLE a (id int);\nSELECT pg_sleep(2);")
    procs = [popen_migrate(empty_db, "migrate", "--json", directory=tmp_path) for _ in range(2)]
    outcomes = [(p.wait(timeout=60), p.stdout.read() if p.stdout else "") for p in procs]
    assert sorted(rc for rc, _ in outcomes) == [0, 2]
    assert versions(empty_db) == ["001"]
    assert scalar(empty_db, "SELECT count(*) FROM schema_migrations_log") == 1


def test_lock_wait_timeout_names_the_holder(empty_db: str, tmp_path: Path) -> None:
    runner = load_runner()
    write_migration(tmp_path, "001_a.sql", "CREATE TABLE a (id int);")
    with psycopg.connect(empty_db, autocommit=True, application_name="holder-test") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (runner.LOCK_KEY,))
        start = time.monotonic()
        result = run_migrate(empty_db, "migrate", "--lock-wait", "1.5", directory=tmp_path)
        elapsed = time.monotonic() - start
        assert result.rc == 4
        assert "holder-test" in result.stderr
        assert f"pid {holder.info.backend_pid}" in result.stderr
    assert 1.5 <= elapsed < 10
    assert scalar(empty_db, "SELECT to_regclass('a')") is None


def test_sigkill_mid_migration_leaves_database_as_before(empty_db: str, tmp_path: Path) -> None:
    write_migration(
        tmp_path,
        "001_killme.sql",
        "CREATE TABLE k (id int);\nINSERT INTO k VALUES (1);\n"
        "SELECT pg_sleep(CASE WHEN current_setting('mdus.test_sleep', true) = 'on'"
        " THEN 60 ELSE 0 END);",
    )
    env = {**os.environ, "PGOPTIONS": "-c mdus.test_sleep=on"}
    proc = popen_migrate(empty_db, "migrate", directory=tmp_path, env=env)
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'mdus-migrate'"
        " AND query LIKE %s"
    )
    deadline = time.monotonic() + 30
    while scalar(empty_db, query, ("%pg_sleep%",)) == 0:
        assert time.monotonic() < deadline, "runner never reached its sleep"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    # The orphaned backend notices the dead client (client_connection_check_interval),
    # rolls back and releases the migration lock.
    deadline = time.monotonic() + 20
    while scalar(empty_db, query, ("%",)) > 0:
        assert time.monotonic() < deadline, "orphaned backend still running"
        time.sleep(0.2)
    assert scalar(empty_db, "SELECT to_regclass('k')") is None
    assert versions(empty_db) == []
    result = run_migrate(empty_db, "migrate", directory=tmp_path)
    assert result.rc == 2, result.stderr
    assert versions(empty_db) == ["001"]
    assert scalar(empty_db, "SELECT count(*) FROM k") == 1


def _blocked_setup(dsn: str, directory: Path) -> None:
    write_migration(directory, "001_a.sql", "CREATE TABLE a (id int);")
    assert run_migrate(dsn, "migrate", directory=directory).rc == 2
    write_migration(directory, "002_b.sql", "ALTER TABLE a ADD COLUMN x int;")


def test_lock_timeout_retries_then_names_blockers(empty_db: str, tmp_path: Path) -> None:
    _blocked_setup(empty_db, tmp_path)
    with psycopg.connect(empty_db, application_name="blocker-test") as blocker:
        blocker.execute("LOCK TABLE a IN ACCESS SHARE MODE")
        result = run_migrate(
            empty_db,
            "migrate",
            "--lock-timeout",
            "300ms",
            "--lock-retries",
            "2",
            directory=tmp_path,
        )
        pid = blocker.info.backend_pid
    assert result.rc == 4, result.stderr
    assert "hit 3 times" in result.stderr
    assert "blocker-test" in result.stderr and f"pid {pid}" in result.stderr
    assert versions(empty_db) == ["001"]
    assert scalar(empty_db, "SELECT count(*) FROM pg_attribute WHERE attname = 'x'") == 0


def test_lock_timeout_retry_succeeds_when_blocker_leaves(empty_db: str, tmp_path: Path) -> None:
    _blocked_setup(empty_db, tmp_path)
    blocker = psycopg.connect(empty_db, application_name="blocker-test")
    blocker.execute("LOCK TABLE a IN ACCESS SHARE MODE")
    timer = threading.Timer(1.5, blocker.rollback)
    timer.start()
    try:
        result = run_migrate(
            empty_db,
            "migrate",
            "--json",
            "--lock-timeout",
            "300ms",
            "--lock-retries",
            "6",
            directory=tmp_path,
        )
    finally:
        timer.join()
        blocker.close()
    assert result.rc == 2, result.stderr
    assert result.json["applied"][0]["attempts"] > 1
    assert versions(empty_db) == ["001", "002"]


def test_no_transaction_migration(empty_db: str, tmp_path: Path) -> None:
    write_migration(tmp_path, "001_a.sql", "CREATE TABLE a (id int);")
    (tmp_path / "002_idx.sql").write_text(
        "-- migrate:no-transaction\n-- migrate:up\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS a_id_idx ON a (id);\n"
        "-- migrate:down\nDROP INDEX CONCURRENTLY IF EXISTS a_id_idx;\n"
    )
    result = run_migrate(empty_db, "migrate", "--json", directory=tmp_path)
    assert result.rc == 2, result.stderr
    assert result.json["applied"][1]["transactional"] is False
    assert scalar(
        empty_db, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'a_id_idx'::regclass"
    )
    assert run_migrate(empty_db, "rollback", "--target", "1", directory=tmp_path).rc == 2
    assert scalar(empty_db, "SELECT to_regclass('a_id_idx')") is None
    # A failing non-transactional step is recorded and blocks later runs until repair.
    (tmp_path / "002_idx.sql").unlink()
    (tmp_path / "002_bad.sql").write_text(
        "-- migrate:no-transaction\n-- migrate:up\nCREATE INDEX CONCURRENTLY bad ON nope (x);\n"
    )
    assert run_migrate(empty_db, "migrate", directory=tmp_path).rc == 1
    blocked = run_migrate(empty_db, "migrate", "--json", directory=tmp_path)
    assert blocked.rc == 3 and blocked.json["drift"][0]["problem"] == "failed"
    assert run_migrate(empty_db, "repair", directory=tmp_path).rc == 2
    assert versions(empty_db) == ["001"]


def test_baseline(empty_db: str, tmp_path: Path) -> None:
    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY)")
        conn.execute("INSERT INTO schema_migrations VALUES ('001_initial_schema')")
    refused = run_migrate(empty_db, "migrate")
    assert refused.rc == 1 and "baseline" in refused.stderr
    result = run_migrate(empty_db, "baseline", "--version", "002", "--json")
    assert result.rc == 2, result.stderr
    assert versions(empty_db) == ["001", "002"]
    assert scalar(empty_db, "SELECT count(*) FROM schema_migrations_legacy") == 1
    status = run_migrate(empty_db, "status", "--json").json["migrations"]
    assert [(m["state"], m["kind"]) for m in status] == [
        ("applied", "baseline"),
        ("applied", "baseline"),
    ] + [("pending", None)] * (len(ALL) - 2)
    assert run_migrate(empty_db, "baseline", "--version", "003").rc == 1


def test_migrator_role_contract(
    new_db: Callable[..., str], admin_conn: psycopg.Connection[Any], template_db: str
) -> None:
    """What Ansible sets up: roles, a database owned by mdus_owner, extensions created by
    the superuser with partman rights for the owner; then the migrator (no superuser, no
    CREATEROLE) applies everything over the socket."""
    assert template_db  # the platform roles exist in the cluster
    admin_conn.execute("ALTER ROLE mdus_migrator LOGIN NOSUPERUSER NOCREATEROLE")
    admin_conn.execute("GRANT mdus_owner TO mdus_migrator")
    dsn = new_db()
    dbname = dsn.split("dbname=")[1].split()[0]
    admin_conn.execute(f"ALTER DATABASE {dbname} OWNER TO mdus_owner")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in (
            "CREATE EXTENSION pg_stat_statements",
            "CREATE EXTENSION pgaudit",
            "CREATE SCHEMA partman",
            "CREATE EXTENSION pg_partman SCHEMA partman",
            "GRANT USAGE, CREATE ON SCHEMA partman TO mdus_owner",
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA partman TO mdus_owner",
            "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA partman TO mdus_owner",
            "GRANT EXECUTE ON ALL PROCEDURES IN SCHEMA partman TO mdus_owner",
        ):
            conn.execute(statement)
    migrator_dsn = dsn.replace("user=postgres", "user=mdus_migrator")
    try:
        refused = run_migrate(migrator_dsn, "migrate", "--json")
        assert refused.rc == 1, refused.stdout
        assert "GRANT EXECUTE ON FUNCTION pg_create_restore_point(text)" in refused.stderr
        assert versions(dsn) == []
        with psycopg.connect(dsn, autocommit=True) as conn:  # what the mdus_schema role grants
            conn.execute("GRANT EXECUTE ON FUNCTION pg_create_restore_point(text) TO mdus_migrator")
        # 005 sets pgaudit.role for the database (object auditing of patient data reads):
        # refused, with the fix named, until the migrator may set that parameter.
        no_audit = run_migrate(migrator_dsn, "migrate", "--json")
        assert no_audit.rc == 1, no_audit.stdout
        assert "GRANT SET ON PARAMETER pgaudit.role TO mdus_owner" in no_audit.stderr
        assert no_audit.json["restore_point"]["name"].startswith("mdus_before_000_")
        assert versions(dsn) == ["001", "002", "003", "004"]
        admin_conn.execute("GRANT SET ON PARAMETER pgaudit.role TO mdus_owner")
        result = run_migrate(migrator_dsn, "migrate", "--json")
        assert result.rc == 2, result.stderr
        assert result.json["restore_point"]["name"].startswith("mdus_before_004_")
        setting = scalar(
            dsn,
            "SELECT s.setconfig FROM pg_db_role_setting s"
            " JOIN pg_database d ON d.oid = s.setdatabase"
            " WHERE d.datname = current_database() AND s.setrole = 0",
        )
        assert setting == ["pgaudit.role=mdus_auditor"]
        assert scalar(dsn, "SELECT applied_by FROM schema_migrations LIMIT 1") == "mdus_migrator"
        owners = scalar(
            dsn,
            "SELECT array_agg(DISTINCT pg_get_userbyid(relowner)::text) FROM pg_class"
            " WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p', 'v')"
            " AND relname NOT LIKE 'schema_migrations%%' AND relname NOT LIKE 'pg_stat%%'",
        )
        assert owners == ["mdus_owner"]
        assert run_migrate(migrator_dsn, "rollback", "--target", "0", "--yes-destroy-all").rc == 2
        assert run_migrate(migrator_dsn, "migrate").rc == 2
    finally:
        admin_conn.execute("ALTER ROLE mdus_migrator NOLOGIN")
        admin_conn.execute("REVOKE SET ON PARAMETER pgaudit.role FROM mdus_owner")
