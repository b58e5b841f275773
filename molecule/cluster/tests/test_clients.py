"""The application path through PgBouncer, from the controller as an application runs:
no session state or tenant identity crosses clients, and every client configuration of
docs/clients.md runs the seed's operations on concurrent connections."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.integration.clients import bouncer_dsn, new_app_user, run_snippet
from tests.integration.pglab import psql

PRIMARY = "mdus-cluster-pg1"
testinfra_hosts = [PRIMARY]
ATTEMPTS = 12  # client B reconnects until it lands on client A's server connection


def _server_pid(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row
    return int(row[0])


def _after_client_a(
    setup: Callable[[psycopg.Connection[Any]], None], probe: str, db: str = "mdus_db"
) -> list[tuple[Any, ...]]:
    """Client A changes session state and leaves; client B, which sets nothing, connects
    until it gets A's server connection (PgBouncer reuses the last one released) and
    reports what it sees there. Asserts B did land on A's server connection."""
    dsn = bouncer_dsn(PRIMARY, db)
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as a:
        a_pid = _server_pid(a)
        setup(a)
    seen, pids = [], set()
    for _ in range(ATTEMPTS):
        with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as b:
            row = b.execute(f"SELECT pg_backend_pid(), {probe}").fetchone()
            assert row
            pids.add(row[0])
            seen.append(tuple(row[1:]))
        if a_pid in pids:
            break
    assert a_pid in pids, f"client B never got client A's server connection ({a_pid})"
    return seen


@pytest.fixture(scope="module")
def tenant_a() -> tuple[str, str]:
    """Application user A with one document (created through PgBouncer)."""
    dsn = bouncer_dsn(PRIMARY)
    user = new_app_user(dsn)
    with psycopg.connect(dsn, prepare_threshold=None) as conn, conn.transaction():
        conn.execute("SELECT mdus_set_app_user(%s)", (user,))
        row = conn.execute(
            "INSERT INTO documents (user_id, filename, original_filename, file_path,"
            " file_size, mime_type) VALUES (%s, 'a.pdf', 'a.pdf', '/a.pdf', 1,"
            " 'application/pdf') RETURNING id::text",
            (user,),
        ).fetchone()
        assert row
    return user, row[0]


def test_identity_set_at_session_level_never_reaches_the_next_client(
    tenant_a: tuple[str, str],
) -> None:
    user, _ = tenant_a

    def client_a(conn: psycopg.Connection[Any]) -> None:
        with conn.transaction():  # what a plain SET in application code does
            conn.execute("SELECT set_config('mdus.app_user', %s, false)", (user,))
            row = conn.execute("SELECT count(*) FROM documents").fetchone()
            assert row == (0,)  # not bound to the transaction: ignored even for A

    seen = _after_client_a(
        client_a,
        "coalesce(current_setting('mdus.app_user', true), ''),"
        " (SELECT count(*) FROM documents), mdus_app_user_id() IS NULL",
    )
    assert all(row == ("", 0, True) for row in seen), seen


def test_client_that_names_no_user_sees_nothing(tenant_a: tuple[str, str]) -> None:
    assert tenant_a
    with psycopg.connect(bouncer_dsn(PRIMARY), prepare_threshold=None) as conn:
        for table in ("documents", "document_analysis", "extracted_entities", "audit_logs"):
            row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
            assert row == (0,), table


@pytest.mark.parametrize(
    ("setting", "statement", "probe"),
    [
        (
            "statement_timeout",
            "SET statement_timeout = '1234ms'",
            "current_setting('statement_timeout')",
        ),
        ("search_path", "SET search_path = pg_catalog", "current_setting('search_path')"),
        ("role", "SET ROLE mdus_app", "current_setting('role')"),
    ],
)
def test_session_settings_never_reach_the_next_client(
    setting: str, statement: str, probe: str
) -> None:
    with psycopg.connect(bouncer_dsn(PRIMARY), autocommit=True, prepare_threshold=None) as fresh:
        row = fresh.execute(f"SELECT {probe}").fetchone()
        assert row
        default = row[0]
    seen = _after_client_a(lambda conn: conn.execute(statement), probe)
    assert all(row == (default,) for row in seen), f"{setting} leaked: {seen}"


def test_session_alias_resets_state_when_the_client_leaves() -> None:
    seen = _after_client_a(
        lambda conn: conn.execute("SET statement_timeout = '4321ms'"),
        "current_setting('statement_timeout')",
        db="mdus_db_session",
    )
    assert ("4321ms",) not in seen, seen


@pytest.mark.parametrize(
    ("snippet", "env"),
    [
        ("psycopg3", {}),
        ("psycopg3-session", {}),
        ("psycopg2", {}),
        ("sqlalchemy", {"MDUS_SQLALCHEMY_DRIVER": "psycopg2"}),
        ("sqlalchemy", {"MDUS_SQLALCHEMY_DRIVER": "psycopg"}),
        ("asyncpg", {"MDUS_ASYNCPG_DATABASE": "mdus_db"}),
        ("asyncpg", {"MDUS_ASYNCPG_DATABASE": "mdus_db_session"}),
    ],
    ids=[
        "psycopg3-no-prepare",
        "psycopg3-defaults-session",
        "psycopg2",
        "sqlalchemy-psycopg2",
        "sqlalchemy-psycopg3",
        "asyncpg-no-cache",
        "asyncpg-defaults-session",
    ],
)
def test_documented_client_runs_the_seed_operations(
    host: Any, snippet: str, env: dict[str, str]
) -> None:
    """2 concurrent connections x 12 rounds of: create a document, add its analysis,
    read both, record a metric; every row lands under the acting user."""
    user = new_app_user(bouncer_dsn(PRIMARY))
    documents = run_snippet(snippet, PRIMARY, user, workers=2, rounds=12, env=env)
    assert len(set(documents)) == 24
    counts = psql(
        host,
        "SELECT count(DISTINCT d.id) || ',' || count(DISTINCT a.id) || ','"
        " || (SELECT count(*) FROM processing_metrics m JOIN documents x ON x.id = m.document_id"
        f"     WHERE x.user_id = '{user}')"
        " FROM documents d JOIN document_analysis a ON a.document_id = d.id"
        f" WHERE d.user_id = '{user}'",
        db="mdus_db",
    )
    assert counts == "24,24,24"


def test_psycopg3_defaults_fail_fast_on_the_transaction_pool() -> None:
    """What docs/clients.md says: psycopg 3 prepares on the 6th execution; PgBouncer 1.18
    cannot carry that across transactions and the reset drops it, so the 7th execution
    fails at once and always with the same error (set prepare_threshold=None, or use
    mdus_db_session). If the installed PgBouncer tracks prepared statements this test
    must change with the docs."""
    with psycopg.connect(bouncer_dsn(PRIMARY)) as conn:
        for attempt in range(1, 8):
            try:
                with conn.transaction():
                    conn.execute("SELECT %s::int", (attempt,))
            except errors.InvalidSqlStatementName as exc:
                assert attempt == 7 and "_pg3_" in str(exc), (attempt, exc)
                return
    pytest.fail("psycopg 3's prepared statement ran through transaction pooling")
