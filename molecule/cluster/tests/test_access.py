"""Who may connect, and what each MDUS role may do."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.pglab import PKI_DIR, lab_secret, psql, tcp_psql

PRIMARY = "mdus-cluster-pg1"
testinfra_hosts = [PRIMARY]


def _conn(user: str, db: str = "mdus_db", sslmode: str = "verify-full") -> str:
    return (
        f"host={PRIMARY} port=5432 dbname={db} user={user} sslmode={sslmode} "
        f"sslrootcert={PKI_DIR}/ca.crt"
    )


def test_app_connects_over_verified_tls(host: Any) -> None:
    rc, out, err = tcp_psql(
        host,
        _conn("mdus_app"),
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        lab_secret("mdus_app"),
    )
    assert rc == 0, err
    assert out == "t"


def test_plaintext_connection_refused(host: Any) -> None:
    rc, _, err = tcp_psql(
        host, _conn("mdus_app", sslmode="disable"), "SELECT 1", lab_secret("mdus_app")
    )
    assert rc != 0
    assert "no encryption" in err


def test_wrong_password_refused(host: Any) -> None:
    rc, _, err = tcp_psql(host, _conn("mdus_app"), "SELECT 1", "not-the-password")
    assert rc != 0
    assert "password authentication failed" in err


def test_replication_role_cannot_read_application_tables(host: Any) -> None:
    rc, _, err = tcp_psql(
        host, _conn("replicator"), "SELECT count(*) FROM documents", lab_secret("replicator")
    )
    assert rc != 0
    assert "permission denied" in err


def test_readonly_role_cannot_write(host: Any) -> None:
    rc, _, err = tcp_psql(
        host,
        _conn("mdus_readonly"),
        "INSERT INTO model_configurations (model_name, model_version, model_type) "
        "VALUES ('x', '1', 'ner')",
        lab_secret("mdus_readonly"),
    )
    assert rc != 0
    assert "permission denied" in err


def test_readonly_role_can_read(host: Any) -> None:
    rc, out, err = tcp_psql(
        host,
        _conn("mdus_readonly"),
        "SELECT count(*) >= 0 FROM documents",
        lab_secret("mdus_readonly"),
    )
    assert rc == 0, err
    assert out == "t"


def test_analyst_cannot_read_raw_entities(host: Any) -> None:
    rc, _, err = tcp_psql(
        host,
        _conn("mdus_analyst"),
        "SELECT count(*) FROM extracted_entities",
        lab_secret("mdus_analyst"),
    )
    assert rc != 0
    assert "permission denied" in err


@pytest.mark.parametrize(
    "role",
    [
        "mdus_app",
        "mdus_readonly",
        "mdus_analyst",
        "mdus_migrator",
        "mdus_monitor",
        "mdus_backup",
        "replicator",
    ],
)
def test_roles_hold_no_dangerous_attributes(host: Any, role: str) -> None:
    row = psql(
        host,
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls "
        f"FROM pg_roles WHERE rolname = '{role}'",
    )
    assert row == "f|f|f|f", f"{role}: {row}"
