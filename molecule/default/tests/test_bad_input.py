"""Bad input is refused with a message naming the variable, and the host stays as it was."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.pglab import CONF_DIR, PKI_DIR, molecule_playbook, psql

CASES = [
    pytest.param(
        {"postgresql_workload_profile": "webscale"}, "postgresql_workload_profile", id="profile"
    ),
    pytest.param(
        {"postgresql_settings": {"shared_buffers": "64GB"}}, "shared_buffers", id="shared-buffers"
    ),
    pytest.param(
        {
            "postgresql_hba_entries": [
                {
                    "type": "hostssl",
                    "database": "all",
                    "user": "all",
                    "address": "0.0.0.0/0",
                    "method": "trust",
                }
            ]
        },
        "postgresql_hba_entries",
        id="hba-trust",
    ),
    pytest.param(
        {
            "postgresql_hba_entries": [
                {
                    "type": "host",
                    "database": "all",
                    "user": "all",
                    "address": "0.0.0.0/0",
                    "method": "scram-sha-256",
                }
            ]
        },
        "postgresql_hba_entries",
        id="hba-plain-host",
    ),
    pytest.param(
        {
            "postgresql_hba_entries": [
                {"type": "local", "database": "all", "user": "all", "method": "scram-sha-256"}
            ]
        },
        "local lines must use peer",
        id="hba-local-scram",
    ),
    pytest.param({"postgresql_version": 16}, "postgresql_version", id="version-16"),
    # Moving WAL out of an existing cluster is a manual, offline operation.
    pytest.param(
        {"postgresql_wal_dir": "/srv/wal"},
        "Refusing to change the pg_wal location of the existing cluster",
        id="wal-dir-moved",
    ),
    pytest.param(
        {"pki_mode": "none", "postgresql_ssl_ca_file": "/etc/mdus-pki/missing-ca.crt"},
        "missing-ca.crt does not exist",
        id="missing-ca",
    ),
    # Values PostgreSQL itself rejects: vetted with postgres -C on a candidate file, the
    # live postgresql.conf is never replaced.
    pytest.param(
        {"postgresql_settings": {"max_connections": -5}},
        'outside the valid range for parameter "max_connections"',
        id="setting-out-of-range",
    ),
    pytest.param(
        {"postgresql_settings": {"work_mem": "lots"}},
        'invalid value for parameter "work_mem"',
        id="setting-bad-value",
    ),
    pytest.param(
        {"postgresql_settings": {"shared_bufers": "1GB"}},
        "names shared_bufers: not a PostgreSQL 15 setting",
        id="setting-misspelt",
    ),
    pytest.param(
        {"postgresql_settings": {"pgaudt.log": "all"}},
        "names pgaudt.log",
        id="setting-unknown-namespace",
    ),
    pytest.param(
        {"postgresql_settings": {"pgaudit.lgo": "all"}},
        "names pgaudit.lgo: the running server has that library loaded",
        id="setting-unknown-to-loaded-library",
    ),
    pytest.param(
        {"postgresql_settings": {"max_wal_senders": 1}},
        "max_wal_senders (1) must be at least",
        id="too-few-wal-senders",
    ),
    pytest.param(
        {"postgresql_settings": {"work_mem": "1GB"}},
        "more than four times the host's",
        id="work-mem-overcommit",
    ),
    pytest.param(
        {"mdus_schema_passwords": {"mdus_app": "   "}},
        "mdus_schema_passwords: the password of mdus_app is empty or only",
        id="blank-app-password",
    ),
    pytest.param(
        {"postgresql_users": [{"name": "mdus_dba", "password": ""}]},
        "postgresql_users: the password of mdus_dba is empty",
        id="empty-user-password",
    ),
    # A pg_hba field cannot add a line of its own (a trust line after a comment's newline).
    pytest.param(
        {
            "postgresql_hba_entries": [
                {
                    "type": "hostssl",
                    "database": "all",
                    "user": "all",
                    "address": "samenet",
                    "method": "scram-sha-256",
                    "comment": "lab\nhost all all 0.0.0.0/0 trust",
                }
            ]
        },
        "comment holds a line break",
        id="hba-comment-newline",
    ),
    # postgresql_settings cannot take over or weaken what the role secures.
    pytest.param(
        {"postgresql_settings": {"hba_file": "/tmp/pg_hba.conf"}},
        "hba_file: the role renders pg_hba.conf itself",
        id="setting-hba-file",
    ),
    pytest.param(
        {"postgresql_settings": {"ssl_min_protocol_version": "TLSv1"}},
        "postgresql_settings.ssl_min_protocol_version is 'tlsv1'",
        id="setting-tls10",
    ),
    pytest.param(
        {"postgresql_settings": {"shared_preload_libraries": "pg_stat_statements"}},
        "shared_preload_libraries: it would replace the role's list",
        id="setting-preload-drops-pgaudit",
    ),
    # A login cannot be made superuser in all but name.
    pytest.param(
        {
            "postgresql_users": [
                {"name": "mdus_dba", "password": "x" * 24, "roles": ["pg_execute_server_program"]}
            ]
        },
        "postgresql_users: mdus_dba would be granted pg_execute_server_program",
        id="user-server-program",
    ),
]


def _fingerprint(host: Any) -> str:
    sums = host.run(
        "sha256sum %s/postgresql.conf %s/pg_hba.conf %s/host.crt %s/ca.crt",
        CONF_DIR,
        CONF_DIR,
        PKI_DIR,
        PKI_DIR,
    ).stdout
    started = psql(host, "SELECT pg_postmaster_start_time()")
    passwords = psql(
        host,
        "SELECT string_agg(rolname || ':' || md5(coalesce(rolpassword, '')), ',' ORDER BY rolname)"
        " FROM pg_authid WHERE rolname IN ('mdus_app', 'mdus_dba', 'replicator')",
    )
    return sums + started + passwords


@pytest.mark.parametrize(("extra_vars", "message"), CASES)
def test_bad_input_refused_host_unchanged(
    host: Any, extra_vars: dict[str, Any], message: str
) -> None:
    before = _fingerprint(host)
    result = molecule_playbook("site.yml", extra_vars, limit=host.backend.get_hostname())
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    assert message in output, output[-3000:]
    assert "argument_spec_data" not in output, "the refusal is buried in the role's specification"
    assert "changed=0" in output, output[-2000:]
    assert _fingerprint(host) == before
