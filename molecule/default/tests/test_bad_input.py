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
    pytest.param(
        {"pki_mode": "none", "postgresql_ssl_ca_file": "/etc/mdus-pki/missing-ca.crt"},
        "missing-ca.crt does not exist",
        id="missing-ca",
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
    return sums + started


@pytest.mark.parametrize(("extra_vars", "message"), CASES)
def test_bad_input_refused_host_unchanged(
    host: Any, extra_vars: dict[str, Any], message: str
) -> None:
    before = _fingerprint(host)
    result = molecule_playbook("site.yml", extra_vars, limit=host.backend.get_hostname())
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    assert message in output, output[-3000:]
    assert "changed=0" in output, output[-2000:]
    assert _fingerprint(host) == before
