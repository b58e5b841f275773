"""The pki role's decision which certificates a run signs (pki_certificates_to_sign)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.modload import load_module

pki = load_module("pki_filters", Path(__file__).parents[2] / "roles/pki/filter_plugins/pki.py")
SANS = ["DNS:db1", "IP:10.0.0.5", "DNS:localhost"]
CA = "aa:bb"
IDENTITIES = [
    {"name": "host", "group": "ssl-cert", "cn": "db1"},
    {"name": "pgbouncer", "group": "mdus-pgbouncer", "cn": "pgbouncer@db1"},
]


def key(name: str, fp: str = "k1", changed: bool = False) -> dict[str, Any]:
    return {"item": {"name": name}, "changed": changed, "fingerprint": {"sha256": fp}}


def cert(name: str, cn: str, **extra: Any) -> dict[str, Any]:
    return {
        "item": {"name": name},
        "valid_at": {"renewal": True},
        "subject": {"commonName": cn},
        "subject_alt_name": list(reversed(SANS)),  # order does not matter
        "authority_key_identifier": CA,
        "public_key_fingerprints": {"sha256": "k1"},
        **extra,
    }


def decide(
    certs: list[dict[str, Any]], keys: list[dict[str, Any]] | None = None, force: bool = False
) -> dict[str, str]:
    keys = keys if keys is not None else [key("host"), key("pgbouncer")]
    out = pki.pki_certificates_to_sign(
        IDENTITIES, keys, certs, ca_key_id=CA, sans=SANS, force=force
    )
    return {i["name"]: i["reason"] for i in out}


def good() -> list[dict[str, Any]]:
    return [cert("host", "db1"), cert("pgbouncer", "pgbouncer@db1")]


def test_a_converged_host_signs_nothing() -> None:
    assert decide(good()) == {}


def test_force_signs_every_certificate() -> None:
    assert set(decide(good(), force=True)) == {"host", "pgbouncer"}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"failed": True, "msg": "No such file"}, "no readable certificate"),
        ({"valid_at": {"renewal": False}}, "expires within the renewal window"),
        ({"subject": {"commonName": "db2"}}, "common name is not pgbouncer@db1"),
        ({"subject_alt_name": ["DNS:db1"]}, "subjectAltNames changed"),
        ({"authority_key_identifier": "cc:dd"}, "issued by another CA"),
        ({"public_key_fingerprints": {"sha256": "other"}}, "does not match the key"),
    ],
)
def test_each_mismatch_signs_only_that_certificate(change: dict[str, Any], reason: str) -> None:
    certs = [cert("host", "db1"), cert("pgbouncer", "pgbouncer@db1", **change)]
    assert decide(certs) == {"pgbouncer": reason}


def test_a_new_key_gets_a_new_certificate() -> None:
    keys = [key("host"), key("pgbouncer", changed=True)]
    assert decide(good(), keys) == {"pgbouncer": "does not match the key"}


def test_a_missing_result_counts_as_no_certificate() -> None:
    assert decide([cert("host", "db1")]) == {"pgbouncer": "no readable certificate"}
