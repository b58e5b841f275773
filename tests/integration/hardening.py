"""The hardening baseline of a database host, written once and run by every scenario.

Each check takes a testinfra host and fails with the reason. A scenario runs all of them
on each of its database hosts (molecule/<scenario>/tests/test_hardening.py):

    @pytest.mark.parametrize("check", CHECKS, ids=CHECK_IDS)
    def test_hardening(host, check): check(host)

tests/unit/test_scenarios.py makes sure every scenario with database hosts does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from tests.integration.clients import container_ip
from tests.integration.pglab import CONF_DIR, DATA_DIR, LOG_DIR, PKI_DIR, psql

# Who owns what, and how open it may be.
MODES = [
    (CONF_DIR, 0o700, "postgres", None),
    (f"{CONF_DIR}/postgresql.conf", 0o640, "postgres", None),
    (f"{CONF_DIR}/pg_hba.conf", 0o600, "postgres", None),
    (DATA_DIR, 0o700, "postgres", None),
    (LOG_DIR, 0o700, "postgres", None),
    (f"{PKI_DIR}/host.key", 0o640, "root", "ssl-cert"),
    (f"{PKI_DIR}/monitoring.key", 0o640, "root", "mdus-monitoring"),
    (f"{PKI_DIR}/pgbackrest.key", 0o640, "root", "mdus-pgbackrest"),
    (f"{PKI_DIR}/pgbouncer.key", 0o640, "root", "mdus-pgbouncer"),
]
# OS user -> the keys it reads (every other key in PKI_DIR it must not read).
KEY_READERS = {
    "postgres": {"host.key", "pgbackrest.key"},  # PostgreSQL; pgBackRest runs as postgres
    "pgbouncer": {"pgbouncer.key"},
    "prometheus": {"monitoring.key"},
}
LOGGING = [
    "logging_collector",
    "log_connections",
    "log_disconnections",
    "log_lock_waits",
    "log_checkpoints",
]


def file_modes(host: Any) -> None:
    for path, mode, user, group in MODES:
        target = host.file(path)
        assert target.exists, path
        assert target.mode == mode, f"{path} is {oct(target.mode)}, not {oct(mode)}"
        assert target.user == user, f"{path} belongs to {target.user}"
        assert group is None or target.group == group, f"{path} has group {target.group}"


def keys_per_identity(host: Any) -> None:
    """Each service's OS user reads its own keys only; PgBouncer, which faces the
    clients, runs as its own user and reads neither another key nor the data directory."""
    keys = host.run(f"ls {PKI_DIR}").stdout.split()
    assert {"host.key", "pgbackrest.key", "pgbouncer.key", "monitoring.key"} <= set(keys), keys
    for user, readable in KEY_READERS.items():
        for key in (k for k in keys if k.endswith(".key")):
            can = host.run(f"runuser -u {user} -- test -r {PKI_DIR}/{key}").rc == 0
            assert can == (key in readable), f"{user} {'reads' if can else 'cannot read'} {key}"
    assert host.run(f"runuser -u pgbouncer -- ls {DATA_DIR}").rc != 0, "pgbouncer lists the data"
    owner = host.run("stat -c %U /proc/$(systemctl show -p MainPID --value pgbouncer)").stdout
    assert owner.strip() == "pgbouncer", f"PgBouncer runs as {owner!r}"
    subject = host.run(f"openssl x509 -noout -subject -in {PKI_DIR}/pgbouncer.crt").stdout
    assert f"CN = pgbouncer@{host.backend.get_hostname()}" in subject, subject


def tls_only(host: Any) -> None:
    assert psql(host, "SHOW ssl") == "on"
    assert psql(host, "SHOW ssl_min_protocol_version") in {"TLSv1.2", "TLSv1.3"}
    assert psql(host, "SHOW password_encryption") == "scram-sha-256"


def hba_lines(host: Any) -> None:
    """local: peer; TCP: hostssl with SCRAM or a certificate; reject only for postgres,
    first after its peer line; nothing without TLS; no line PostgreSQL could not read."""
    rows = psql(
        host,
        "SELECT type, array_to_string(database, ','), array_to_string(user_name, ','), "
        "address, auth_method FROM pg_hba_file_rules WHERE error IS NULL ORDER BY line_number",
    ).splitlines()
    assert rows and rows[0] == "local|all|postgres||peer", rows
    assert sorted(rows[1:5]) == sorted(
        f"{kind}|all,replication|postgres|{address}|reject"
        for kind in ("hostssl", "hostnossl")
        for address in ("0.0.0.0", "::")
    ), rows
    for row in rows[5:]:
        kind, _, _, _, method = row.split("|")
        assert (kind, method) in {
            ("local", "peer"),
            ("hostssl", "scram-sha-256"),
            ("hostssl", "cert"),
        }, row
    assert psql(host, "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL") == "0"


def postgres_not_over_tcp(host: Any) -> None:
    """Whatever the password, pg_hba.conf turns postgres away over TCP from the controller,
    for SQL and for replication."""
    for replication in ("", " replication=true"):
        conninfo = (
            f"host={container_ip(host.backend.get_hostname())} port=5432 dbname=postgres "
            f"user=postgres password=anything sslmode=require connect_timeout=10{replication}"
        )
        try:
            psycopg.connect(conninfo).close()
        except psycopg.OperationalError as refused:
            message = str(refused)
            assert "rejects" in message or "no pg_hba.conf entry" in message, message
            assert 'user "postgres"' in message, message
        else:
            raise AssertionError(f"postgres logged in over TCP ({replication or 'sql'})")


def logging_on(host: Any) -> None:
    for name in LOGGING:
        assert psql(host, f"SHOW {name}") == "on", name
    prefix = psql(host, "SHOW log_line_prefix")
    assert all(escape in prefix for escape in ("%m", "%u", "%d", "%h")), prefix


def one_superuser(host: Any) -> None:
    assert psql(host, "SELECT string_agg(rolname, ',') FROM pg_roles WHERE rolsuper") == "postgres"
    admins = (
        "SELECT count(*) FROM pg_auth_members WHERE admin_option AND member <> 'postgres'::regrole"
    )
    assert psql(host, admins) == "0"


def mdus_db_grants(host: Any) -> None:
    """No table granted to PUBLIC, no grant option outside owners, no CONNECT for PUBLIC."""
    public = (
        "SELECT count(*) FROM information_schema.role_table_grants WHERE grantee = 'PUBLIC' "
        "AND table_schema NOT IN ('pg_catalog', 'information_schema')"
    )
    assert psql(host, public, db="mdus_db") == "0"
    grantable = """SELECT count(*) FROM information_schema.role_table_grants g
             JOIN pg_class c ON c.relname = g.table_name
             JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = g.table_schema
             WHERE g.is_grantable = 'YES' AND g.grantee <> 'postgres'
               AND g.grantee <> pg_get_userbyid(c.relowner)
               AND g.table_schema NOT IN ('pg_catalog', 'information_schema')"""
    assert psql(host, grantable, db="mdus_db") == "0"
    assert psql(host, "SELECT has_database_privilege('public', 'mdus_db', 'CONNECT')") == "f"


def config_managed_whole(host: Any) -> None:
    for name in ("postgresql.conf", "pg_hba.conf", "pg_ident.conf"):
        content = host.file(f"{CONF_DIR}/{name}").content_string
        assert content.startswith("#\n# Ansible managed"), name


CHECKS: list[Callable[[Any], None]] = [
    file_modes,
    keys_per_identity,
    tls_only,
    hba_lines,
    postgres_not_over_tcp,
    logging_on,
    one_superuser,
    mdus_db_grants,
    config_managed_whole,
]
CHECK_IDS = [check.__name__ for check in CHECKS]
