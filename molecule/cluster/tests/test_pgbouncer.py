"""PgBouncer: TLS + SCRAM through the pool, bounded server connections, read-only alias."""

from __future__ import annotations

import secrets
import subprocess
from typing import Any

from tests.integration.pglab import PKI_DIR, lab_secret, node, psql, tcp_psql

PRIMARY = "mdus-cluster-pg1"
REPLICA = "mdus-cluster-pg2"
testinfra_hosts = [PRIMARY]
POOL_LIMIT = 25  # pgbouncer_max_db_connections: the alias in all, whatever the pools


def _bouncer(db: str = "mdus_db", user: str = "mdus_app", sslmode: str = "verify-full") -> str:
    return (
        f"host={PRIMARY} port=6432 dbname={db} user={user} sslmode={sslmode} "
        f"sslrootcert={PKI_DIR}/ca.crt"
    )


def test_pgbouncer_running(host: Any) -> None:
    assert host.service("pgbouncer").is_running
    assert host.service("pgbouncer").is_enabled


def test_app_connects_through_pgbouncer_over_tls(host: Any) -> None:
    rc, out, err = tcp_psql(
        host, _bouncer(), "SELECT current_user, pg_is_in_recovery()", lab_secret("mdus_app")
    )
    assert rc == 0, err
    assert out == "mdus_app|f"


def test_plaintext_refused(host: Any) -> None:
    rc, _, err = tcp_psql(host, _bouncer(sslmode="disable"), "SELECT 1", lab_secret("mdus_app"))
    assert rc != 0, "PgBouncer accepted a connection without TLS"
    assert "SSL required" in err or "hba" in err, err


def test_wrong_password_refused(host: Any) -> None:
    rc, _, err = tcp_psql(host, _bouncer(), "SELECT 1", "wrong-password")
    assert rc != 0
    assert "password authentication failed" in err or "SASL authentication failed" in err


def test_superuser_cannot_log_in_through_pgbouncer(host: Any) -> None:
    rc, _, _ = tcp_psql(host, _bouncer(user="postgres"), "SELECT 1", "anything")
    assert rc != 0


def test_read_only_alias_lands_on_a_replica(host: Any) -> None:
    rc, out, err = tcp_psql(
        host, _bouncer(db="mdus_db_ro"), "SELECT pg_is_in_recovery()", lab_secret("mdus_app")
    )
    assert rc == 0, err
    assert out == "t"


def test_200_clients_share_a_bounded_pool(host: Any) -> None:
    replica = node(REPLICA)
    assert replica is not None
    host.run("printf 'SELECT pg_sleep(0.05);\\n' > /tmp/bouncer.sql")
    bench = host.run(
        f"PGPASSWORD={lab_secret('mdus_app')} timeout 60 pgbench -n -c 200 -j 4 -T 10 "
        "-f /tmp/bouncer.sql %s > /tmp/bouncer-bench.log 2>&1 & "
        "peak=0; for i in $(seq 1 16); do sleep 0.5; "
        'n=$(runuser -u postgres -- psql -XAtc "SELECT count(*) FROM pg_stat_activity '
        "WHERE usename = 'mdus_app' AND datname = 'mdus_db'\"); "
        '[ "$n" -gt "$peak" ] && peak=$n; done; wait; echo $peak',
        _bouncer(),
    )
    peak = int(bench.stdout.strip().splitlines()[-1])
    log = host.run("cat /tmp/bouncer-bench.log").stdout
    assert "number of failed transactions: 0" in log, log
    assert "number of clients: 200" in log
    assert 0 < peak <= POOL_LIMIT, f"PostgreSQL saw {peak} server connections"


def test_lookup_function_serves_no_superuser(host: Any) -> None:
    assert psql(host, "SELECT count(*) FROM pgbouncer.get_auth('postgres')", db="mdus_db") == "0"
    acl = psql(host, "SELECT proacl::text FROM pg_proc WHERE proname = 'get_auth'", db="mdus_db")
    grantees = {entry.split("=")[0] for entry in acl.strip("{}").split(",")}
    assert grantees == {"postgres", "pgbouncer_auth"}, acl  # "" would be PUBLIC


def test_admin_console_only_by_peer_on_the_local_socket(host: Any) -> None:
    """The pool metrics' OS user reads SHOW POOLS by peer; over TCP the console takes no
    login at all, whatever the password (its users sit in userlist.txt without one)."""
    local = host.run(
        "runuser -u prometheus -- psql -X -Atq -h /run/pgbouncer -p 6432 -U prometheus"
        " -d pgbouncer -c 'SHOW POOLS'"
    )
    assert local.rc == 0, local.stderr
    for user in ("prometheus", "postgres"):
        rc, _, err = tcp_psql(host, _bouncer(db="pgbouncer", user=user), "SHOW POOLS", "")
        assert rc != 0 and "login rejected" in err, err


def _docker(*args: str) -> str:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=True, timeout=60
    ).stdout.strip()


def test_clients_outside_postgresqls_networks_are_refused(host: Any) -> None:
    """PgBouncer's hba admits the networks PostgreSQL admits (the lab: samenet), nothing
    wider: the replica reaches the primary's PgBouncer over a second network that no
    pg_hba line names and is refused, while the same login over the lab network works."""
    replica = node(REPLICA)
    login = "port=6432 dbname=mdus_db user=mdus_app sslmode=require"
    rc, out, err = tcp_psql(replica, f"host={PRIMARY} {login}", "SELECT 1", lab_secret("mdus_app"))
    assert (rc, out) == (0, "1"), err
    network = f"mdus-outside-{secrets.token_hex(3)}"
    _docker("network", "create", network)
    try:
        for container in (PRIMARY, REPLICA):
            _docker("network", "connect", network, container)
        outside = _docker(
            "inspect",
            "-f",
            f'{{{{ (index .NetworkSettings.Networks "{network}").IPAddress }}}}',
            PRIMARY,
        )
        assert outside, "the primary got no address on the outside network"
        rc, _, err = tcp_psql(
            replica, f"host={outside} {login}", "SELECT 1", lab_secret("mdus_app")
        )
        assert rc != 0, f"PgBouncer admitted a client from {network} ({outside})"
        assert "login rejected" in err or "hba" in err, err
    finally:
        for container in (PRIMARY, REPLICA):
            subprocess.run(
                ["docker", "network", "disconnect", network, container],
                capture_output=True,
                check=False,
                timeout=60,
            )
        subprocess.run(
            ["docker", "network", "rm", network], capture_output=True, check=False, timeout=60
        )
