"""postgres-baseline hardening controls, one test each, on the primary and the replica."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from tests.integration.clients import container_ip
from tests.integration.pglab import CONF_DIR, DATA_DIR, LOG_DIR, psql


@pytest.mark.parametrize(
    ("path", "mode"),
    [(CONF_DIR, 0o700), (f"{CONF_DIR}/postgresql.conf", 0o640)],
    ids=["config-dir-0700", "postgresql-conf-0640"],
)
def test_config_modes(host: Any, path: str, mode: int) -> None:
    assert host.file(path).mode == mode


def test_pg_hba_owner_only(host: Any) -> None:
    hba = host.file(f"{CONF_DIR}/pg_hba.conf")
    assert hba.user == "postgres"
    assert hba.mode & 0o077 == 0


@pytest.mark.parametrize("path", [DATA_DIR, LOG_DIR], ids=["data-dir", "log-dir"])
def test_data_and_log_dirs_0700(host: Any, path: str) -> None:
    assert host.file(path).mode == 0o700
    assert host.file(path).user == "postgres"


def test_ssl_on(host: Any) -> None:
    assert psql(host, "SHOW ssl") == "on"


def test_only_peer_for_local_lines(host: Any) -> None:
    methods = psql(host, "SELECT DISTINCT auth_method FROM pg_hba_file_rules WHERE type = 'local'")
    assert methods.splitlines() == ["peer"]


def test_only_scram_or_cert_for_hostssl_lines(host: Any) -> None:
    # reject: the lines barring postgres over TCP (test_postgres_rejected_over_tcp_first).
    methods = set(
        psql(
            host, "SELECT DISTINCT auth_method FROM pg_hba_file_rules WHERE type = 'hostssl'"
        ).splitlines()
    )
    assert methods and methods <= {"scram-sha-256", "cert", "reject"}
    rejects = psql(
        host,
        "SELECT DISTINCT array_to_string(user_name, ',') FROM pg_hba_file_rules "
        "WHERE auth_method = 'reject'",
    )
    assert rejects == "postgres"


def test_no_host_or_hostnossl_lines(host: Any) -> None:
    # Only the lines rejecting postgres: no line lets anyone in without TLS.
    assert (
        psql(
            host,
            "SELECT count(*) FROM pg_hba_file_rules "
            "WHERE type IN ('host', 'hostnossl', 'hostgssenc', 'hostnogssenc') "
            "AND NOT (auth_method = 'reject' AND user_name = '{postgres}')",
        )
        == "0"
    )


def test_postgres_rejected_over_tcp_first(host: Any) -> None:
    """The superuser's reject lines (TLS and plain, IPv4 and IPv6, every database and
    replication) come right after its local peer line, before every other line."""
    rows = psql(
        host,
        "SELECT type, array_to_string(database, ','), array_to_string(user_name, ','), "
        "address, auth_method FROM pg_hba_file_rules WHERE error IS NULL ORDER BY line_number",
    ).splitlines()
    assert rows[0] == "local|all|postgres||peer", rows
    assert sorted(rows[1:5]) == sorted(
        f"{kind}|all,replication|postgres|{address}|reject"
        for kind in ("hostssl", "hostnossl")
        for address in ("0.0.0.0", "::")
    ), rows
    assert all(not row.endswith("|reject") for row in rows[5:]), rows


@pytest.mark.parametrize("replication", ["", "true"], ids=["sql", "replication"])
def test_postgres_cannot_connect_over_tcp_from_the_controller(host: Any, replication: str) -> None:
    """Whatever the password, pg_hba.conf turns postgres away over TCP before asking for it."""
    conninfo = (
        f"host={container_ip(host.backend.get_hostname())} port=5432 dbname=postgres "
        "user=postgres password=anything sslmode=require connect_timeout=10"
    )
    if replication:
        conninfo += f" replication={replication}"
    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(conninfo).close()
    message = str(refused.value)
    assert "rejects" in message or "no pg_hba.conf entry" in message, message
    assert 'user "postgres"' in message, message


def test_password_encryption_scram(host: Any) -> None:
    assert psql(host, "SHOW password_encryption") == "scram-sha-256"


@pytest.mark.parametrize(
    "setting",
    [
        "logging_collector",
        "log_connections",
        "log_disconnections",
        "log_lock_waits",
        "log_checkpoints",
    ],
)
def test_logging_on(host: Any, setting: str) -> None:
    assert psql(host, f"SHOW {setting}") == "on"


def test_no_public_table_grants(host: Any) -> None:
    sql = (
        "SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = 'PUBLIC' "
        "AND table_schema NOT IN ('pg_catalog', 'information_schema')"
    )
    assert psql(host, sql, db="mdus_db") == "0"


def test_no_grant_option_outside_postgres(host: Any) -> None:
    # An owner's own privileges carry the grant option implicitly; anything else must not.
    sql = """SELECT count(*) FROM information_schema.role_table_grants g
             JOIN pg_class c ON c.relname = g.table_name
             JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = g.table_schema
             WHERE g.is_grantable = 'YES' AND g.grantee <> 'postgres'
               AND g.grantee <> pg_get_userbyid(c.relowner)
               AND g.table_schema NOT IN ('pg_catalog', 'information_schema')"""
    assert psql(host, sql, db="mdus_db") == "0"
    roles = psql(
        host,
        "SELECT count(*) FROM pg_auth_members WHERE admin_option AND member <> 'postgres'::regrole",
    )
    assert roles == "0"


def test_exactly_one_superuser(host: Any) -> None:
    assert psql(host, "SELECT string_agg(rolname, ',') FROM pg_roles WHERE rolsuper") == "postgres"


def test_public_cannot_connect_to_mdus_db(host: Any) -> None:
    acl = psql(host, "SELECT datacl::text FROM pg_database WHERE datname = 'mdus_db'")
    items = acl.strip("{}").split(",")  # NULL (no ACL yet) means PUBLIC may connect
    assert all(item and not item.startswith("=") for item in items), acl
    assert psql(host, "SELECT has_database_privilege('public', 'mdus_db', 'CONNECT')") == "f"
