"""Safety rails of schema/migrate.py: files that would break a migration's atomicity are
refused when read, no-transaction statements are checked, session state does not carry
over from one migration to the next, failures are logged, NOTICEs are shown, and rolling
back everything needs a confirmation."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psycopg
import pytest
from conftest import popen_migrate, run_migrate, write_migration
from test_runner import load_runner, scalar, versions

TRICKY = r"""SELECT 'COMMIT; ROLLBACK' AS s, E'it\'s; COMMIT' AS e, "we;ird"
  FROM (SELECT 1 AS "we;ird") AS q;
-- COMMIT;
/* ROLLBACK; /* nested */ BEGIN; */
CREATE FUNCTION tricky_plpgsql() RETURNS int LANGUAGE plpgsql AS $body$
BEGIN
    RETURN 1;
END
$body$;
CREATE FUNCTION tricky_atomic(x int) RETURNS int LANGUAGE sql
BEGIN ATOMIC
    SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END;
END;
DO $$ BEGIN PERFORM 1; END $$;
SAVEPOINT s1;
ROLLBACK TO SAVEPOINT s1;
RELEASE SAVEPOINT s1;
CREATE TABLE tricky (id int)"""


def index_file(directory: Path, filename: str, name: str, table: str = "a") -> Path:
    path = directory / filename
    path.write_text(
        "-- migrate:no-transaction\n-- migrate:up\n"
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} (id);\n"
        f"-- migrate:down\nDROP INDEX CONCURRENTLY IF EXISTS {name};\n"
    )
    return path


def index_valid(dsn: str, name: str) -> bool | None:
    return scalar(
        dsn, "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", (name,)
    )


def wait_for(dsn: str, query: str, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not scalar(dsn, query):
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


# --------------------------------------------------------------------------- transaction control


@pytest.mark.parametrize(
    ("statement", "control"),
    [
        ("COMMIT;", "COMMIT"),
        ("begin;", "BEGIN"),
        ("BEGIN ISOLATION LEVEL SERIALIZABLE;", "BEGIN"),
        ("ROLLBACK;", "ROLLBACK"),
        ("rollback work;", "ROLLBACK"),
        ("START TRANSACTION;", "START TRANSACTION"),
        ("END;", "END"),
        ("abort;", "ABORT"),
        ("COMMIT AND CHAIN;", "COMMIT"),
    ],
)
def test_transaction_control_is_refused_when_read(
    tmp_path: Path, statement: str, control: str
) -> None:
    runner = load_runner()
    path = write_migration(
        tmp_path, "001_tx.sql", f"CREATE TABLE a (id int);\n{statement}\nCREATE TABLE b (id int);"
    )
    with pytest.raises(runner.MigrationError, match=rf"^001_tx\.sql:3: {control} in the up"):
        runner.parse_migration(path)
    path = write_migration(tmp_path, "001_tx.sql", "SELECT 1;", f"SELECT 1;\n\n{statement}")
    with pytest.raises(runner.MigrationError, match=rf"^001_tx\.sql:6: {control} in the down"):
        runner.parse_migration(path)


def test_commit_in_a_file_is_refused_before_anything_runs(empty_db: str, tmp_path: Path) -> None:
    write_migration(tmp_path, "001_a.sql", "CREATE TABLE a (id int);", "DROP TABLE a;")
    write_migration(
        tmp_path,
        "002_commit.sql",
        "CREATE TABLE b (id int);\nCOMMIT;\nCREATE TABLE c (id int);",
        "DROP TABLE c;\nDROP TABLE b;",
    )
    for command in (["migrate"], ["status"], ["rollback", "--target", "001"]):
        result = run_migrate(empty_db, *command, directory=tmp_path)
        assert result.rc == 1, (command, result)
        assert "002_commit.sql:3: COMMIT in the up section" in result.stderr, result.stderr
        assert "Remove the COMMIT" in result.stderr and "no-transaction" in result.stderr
    assert versions(empty_db) == []
    assert scalar(empty_db, "SELECT to_regclass('a')") is None
    assert scalar(empty_db, "SELECT to_regclass('b')") is None


def test_transaction_words_in_strings_comments_and_bodies_are_fine(
    empty_db: str, tmp_path: Path
) -> None:
    runner = load_runner()
    path = write_migration(tmp_path, "001_tricky.sql", TRICKY)
    statements = runner.split_statements(runner.parse_migration(path).up)
    assert [s.words(2) for s in statements] == [
        ["SELECT", ""],
        ["CREATE", "FUNCTION"],
        ["CREATE", "FUNCTION"],
        ["DO", ""],
        ["SAVEPOINT", "S1"],
        ["ROLLBACK", "TO"],
        ["RELEASE", "SAVEPOINT"],
        ["CREATE", "TABLE"],
    ]
    result = run_migrate(empty_db, "migrate", directory=tmp_path)
    assert result.rc == 2, result.stderr
    assert scalar(empty_db, "SELECT tricky_atomic(5) + tricky_plpgsql()") == 2
    assert versions(empty_db) == ["001"]


# --------------------------------------------------------------------------- no-transaction


def test_no_transaction_section_is_one_named_statement(empty_db: str, tmp_path: Path) -> None:
    runner = load_runner()
    write_migration(tmp_path, "001_a.sql", "CREATE TABLE a (id int, x int);")
    path = tmp_path / "002_idx.sql"
    path.write_text(
        "-- migrate:no-transaction\n-- migrate:up\n"
        "CREATE INDEX CONCURRENTLY a_id_idx ON a (id);\n"
        "CREATE INDEX CONCURRENTLY a_x_idx ON a (x);\n"
    )
    result = run_migrate(empty_db, "migrate", directory=tmp_path)
    assert result.rc == 1
    assert "002_idx.sql:4: the up section of a '-- migrate:no-transaction' file" in result.stderr
    assert "exactly one statement; found 2" in result.stderr
    assert versions(empty_db) == []
    assert scalar(empty_db, "SELECT to_regclass('a')") is None  # refused before 001 ran
    path.write_text(
        "-- migrate:no-transaction\n-- migrate:up\nCREATE INDEX CONCURRENTLY ON a (id);"
    )
    with pytest.raises(runner.MigrationError, match=r"002_idx\.sql:3: .*must name its index"):
        runner.parse_migration(path)
    path.write_text(
        "-- migrate:no-transaction\n-- migrate:up\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS a_id_idx ON a (id) -- one; statement\n"
    )
    assert runner.parse_migration(path).transactional is False


def test_rerun_after_a_killed_index_build_refuses_the_invalid_index(
    empty_db: str, tmp_path: Path
) -> None:
    """A runner killed during CREATE INDEX CONCURRENTLY leaves an INVALID index and no
    history row; IF NOT EXISTS would skip it on the next run. The runner refuses it."""
    write_migration(tmp_path, "001_a.sql", "CREATE TABLE a (id int);")
    assert run_migrate(empty_db, "migrate", directory=tmp_path).rc == 2
    index_file(tmp_path, "002_idx.sql", "a_id_idx")
    with psycopg.connect(empty_db, application_name="old-writer") as writer:
        writer.execute("INSERT INTO a VALUES (1)")  # open: the index build waits for it
        proc = popen_migrate(empty_db, "migrate", directory=tmp_path)
        wait_for(empty_db, "SELECT to_regclass('a_id_idx') IS NOT NULL", "no index build")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        scalar(
            empty_db,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name LIKE 'mdus-migrate%%'",
        )
        wait_for(
            empty_db,
            "SELECT count(*) = 0 FROM pg_stat_activity WHERE application_name = 'mdus-migrate'",
            "runner backend still there",
        )
    assert index_valid(empty_db, "a_id_idx") is False
    assert versions(empty_db) == ["001"]

    rerun = run_migrate(empty_db, "migrate", directory=tmp_path)
    assert rerun.rc == 1, rerun.stdout
    assert "index public.a_id_idx is INVALID" in rerun.stderr
    assert "DROP INDEX CONCURRENTLY public.a_id_idx; then run the command again" in rerun.stderr
    assert versions(empty_db) == ["001"]
    assert scalar(empty_db, "SELECT action FROM schema_migrations_log ORDER BY id DESC") == "failed"

    with psycopg.connect(empty_db, autocommit=True) as conn:
        conn.execute("DROP INDEX CONCURRENTLY public.a_id_idx")
    assert run_migrate(empty_db, "migrate", directory=tmp_path).rc == 2
    assert versions(empty_db) == ["001", "002"]
    assert index_valid(empty_db, "a_id_idx") is True


def test_invalid_index_after_the_statement_is_not_success(empty_db: str, tmp_path: Path) -> None:
    runner = load_runner()
    write_migration(
        tmp_path, "001_u.sql", "CREATE TABLE u (id int);\nINSERT INTO u VALUES (1), (1);"
    )
    assert run_migrate(empty_db, "migrate", directory=tmp_path).rc == 2
    path = tmp_path / "002_uniq.sql"
    path.write_text(
        "-- migrate:no-transaction\n-- migrate:up\n"
        "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS u_id_idx ON u (id);\n"
    )
    # The build fails on the duplicates and leaves an INVALID index: the message says so.
    failed = run_migrate(empty_db, "migrate", directory=tmp_path)
    assert failed.rc == 1
    assert "it left the INVALID index public.u_id_idx" in failed.stderr
    assert "DROP INDEX CONCURRENTLY public.u_id_idx; then run 'repair'" in failed.stderr
    # The check after the statement: an index that exists but is not valid is a failure.
    migration = runner.parse_migration(path)
    index = runner.concurrent_index(runner.split_statements(migration.up)[0])
    assert index == runner.IndexBuild(name="u_id_idx", table="u")
    with psycopg.connect(empty_db, autocommit=True) as conn:
        with pytest.raises(runner.InvalidIndexError, match=r"INVALID .* after CREATE INDEX"):
            runner.check_index(conn, migration, "up", index, built=True)
        conn.execute("DROP INDEX CONCURRENTLY u_id_idx")
        conn.execute("CREATE TABLE v (id int); CREATE INDEX u_id_idx ON v (id)")
        with pytest.raises(runner.InvalidIndexError, match="belongs to another table"):
            runner.check_index(conn, migration, "up", index, built=True)


def test_no_transaction_lock_timeout_is_separate(empty_db: str, tmp_path: Path) -> None:
    help_text = run_migrate(empty_db, "migrate", "--help").stdout
    assert "--no-transaction-lock-timeout" in help_text
    assert "MDUS_MIGRATE_NO_TRANSACTION_LOCK_TIMEOUT" in help_text
    write_migration(tmp_path, "001_a.sql", "CREATE TABLE a (id int);")
    assert run_migrate(empty_db, "migrate", directory=tmp_path).rc == 2
    index_file(tmp_path, "002_idx.sql", "a_id_idx")
    # The build waits for an older writer: the transactional --lock-timeout does not apply.
    writer = psycopg.connect(empty_db, application_name="old-writer")
    writer.execute("INSERT INTO a VALUES (1)")
    timer = threading.Timer(1.5, writer.rollback)
    timer.start()
    try:
        result = run_migrate(empty_db, "migrate", "--lock-timeout", "300ms", directory=tmp_path)
    finally:
        timer.join()
    assert result.rc == 2, result.stderr
    assert index_valid(empty_db, "a_id_idx") is True
    # Its own limit, from the environment (or the option), does.
    index_file(tmp_path, "003_idx.sql", "a_id2_idx")
    writer.execute("INSERT INTO a VALUES (2)")
    try:
        env = {**os.environ, "MDUS_MIGRATE_NO_TRANSACTION_LOCK_TIMEOUT": "300ms"}
        timed_out = run_migrate(empty_db, "migrate", directory=tmp_path, env=env)
    finally:
        writer.close()
    assert timed_out.rc == 1
    assert "lock timeout" in timed_out.stderr and "55P03" in timed_out.stderr
    assert "DROP INDEX CONCURRENTLY public.a_id2_idx" in timed_out.stderr


# --------------------------------------------------------------------------- session state


@pytest.mark.parametrize("search_path", ["elsewhere", "elsewhere, public"])
def test_session_state_does_not_leak_between_migrations(
    empty_db: str, tmp_path: Path, search_path: str
) -> None:
    runner = load_runner()
    write_migration(
        tmp_path,
        "001_elsewhere.sql",
        f"CREATE SCHEMA elsewhere;\nSET search_path = {search_path};\nSET mdus.leak = 'yes';\n"
        "CREATE TEMPORARY TABLE scratch (id int);\nCREATE TABLE one (id int);",
    )
    write_migration(
        tmp_path,
        "002_next.sql",
        "CREATE TABLE two (id int);\n"
        "DO $$\nBEGIN\n"
        "    IF coalesce(current_setting('mdus.leak', true), '') <> '' THEN\n"
        "        RAISE EXCEPTION 'setting leaked';\n    END IF;\n"
        "    IF to_regclass('scratch') IS NOT NULL THEN\n"
        "        RAISE EXCEPTION 'temporary table leaked';\n    END IF;\n"
        "    IF current_user <> session_user THEN RAISE EXCEPTION 'role leaked'; END IF;\n"
        "    IF NOT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted\n"
        f"                   AND pid = pg_backend_pid() AND objid = {runner.LOCK_KEY}) THEN\n"
        "        RAISE EXCEPTION 'migration lock lost';\n    END IF;\n"
        "END\n$$;",
    )
    result = run_migrate(empty_db, "migrate", directory=tmp_path)
    assert result.rc == 2, result.stderr
    assert versions(empty_db) == ["001", "002"]
    assert scalar(empty_db, "SELECT to_regclass('elsewhere.one')::text") == "elsewhere.one"
    assert scalar(empty_db, "SELECT to_regclass('public.two')::text") == "two"
    assert scalar(empty_db, "SELECT to_regclass('elsewhere.two')") is None
    assert scalar(empty_db, "SELECT to_regclass('elsewhere.schema_migrations')") is None


# --------------------------------------------------------------------------- failures, notices


def test_failures_are_logged_after_the_rollback(empty_db: str, tmp_path: Path) -> None:
    write_migration(tmp_path, "001_a.sql", "CREATE TABLE a (id int);", "DROP TABLE a;\nSELECT 1/0;")
    write_migration(tmp_path, "002_b.sql", "CREATE TABLE b (id int);\nSELECT 1/0;")
    assert run_migrate(empty_db, "migrate", directory=tmp_path).rc == 1
    (tmp_path / "002_b.sql").unlink()
    down = run_migrate(
        empty_db, "rollback", "--target", "0", "--yes-destroy-all", directory=tmp_path
    )
    assert down.rc == 1 and "division by zero" in down.stderr
    assert versions(empty_db) == ["001"]
    assert scalar(empty_db, "SELECT to_regclass('a')::text") == "a"
    with psycopg.connect(empty_db) as conn:
        rows = conn.execute(
            "SELECT action, version, details FROM schema_migrations_log ORDER BY id"
        ).fetchall()
    assert [(action, version) for action, version, _ in rows] == [
        ("migrate", "001"),
        ("failed", "002"),
        ("failed", "001"),
    ]
    for (_, _, details), direction in zip(rows[1:], ("up", "down"), strict=True):
        assert details["direction"] == direction and details["sqlstate"] == "22012"
        assert "division by zero" in details["error"] and details["transactional"] is True


def test_verbose_shows_notices(empty_db: str, tmp_path: Path) -> None:
    notice = "DO $$ BEGIN RAISE NOTICE 'hello from %s'; END $$;"
    write_migration(tmp_path, "001_quiet.sql", notice % "one")
    quiet = run_migrate(empty_db, "migrate", directory=tmp_path)
    assert quiet.rc == 2 and "hello" not in quiet.stdout + quiet.stderr
    write_migration(tmp_path, "002_loud.sql", notice % "two", notice % "down")
    loud = run_migrate(empty_db, "migrate", "--verbose", directory=tmp_path)
    assert loud.rc == 2, loud.stderr
    assert "002_loud: NOTICE: hello from two" in loud.stdout
    as_json = run_migrate(empty_db, "rollback", "--target", "1", "-v", "--json", directory=tmp_path)
    assert as_json.rc == 2 and as_json.json["changed"] is True  # stdout stays one document
    assert "002_loud: NOTICE: hello from down" in as_json.stderr
    assert versions(empty_db) == ["001"]


# --------------------------------------------------------------------------- rollback all


def test_rollback_everything_needs_confirmation(migrated_db: str) -> None:
    refused = run_migrate(migrated_db, "rollback", "--target", "0")
    assert refused.rc == 1
    assert "--yes-destroy-all" in refused.stderr and "nothing was rolled back" in refused.stderr
    assert versions(migrated_db) == ["001", "002", "003", "004", "005", "006"]
    assert run_migrate(migrated_db, "rollback", "--target", "000").rc == 1
    plan = run_migrate(migrated_db, "rollback", "--target", "0", "--dry-run", "--json")
    assert plan.rc == 2 and len(plan.json["applied"]) == 6
    done = run_migrate(migrated_db, "rollback", "--target", "0", "--yes-destroy-all")
    assert done.rc == 2, done.stderr
    assert versions(migrated_db) == []
