"""The pki role's probe (roles/pki/library/mdus_pki_probe.py) reads keys and certificates
as the community.crypto modules it replaces on a converged host would, and its findings
drive pki_certificates_to_sign to the same decisions.

Real keys and certificates made with cryptography in a temporary directory (owned by the
user running the tests, so the expected owner is that user).
"""

from __future__ import annotations

import datetime
import grp
import ipaddress
import os
import pwd
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.modload import load_module

REPO = Path(__file__).parents[2]
probe_mod = load_module("mdus_pki_probe", REPO / "roles/pki/library/mdus_pki_probe.py")
pki = load_module("pki_filters", REPO / "roles/pki/filter_plugins/pki.py")

NOW = datetime.datetime(2026, 12, 4, tzinfo=datetime.UTC)
SANS = ["DNS:db1", "DNS:localhost", "IP:127.0.0.1", "IP:10.0.0.5"]
OWNER = pwd.getpwuid(os.getuid()).pw_name
GROUP = grp.getgrgid(os.getgid()).gr_name


def _pem_key(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _ca() -> tuple[Any, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP384R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "lab CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _write_identity(
    directory: Path, name: str, ca: tuple[Any, x509.Certificate], *, days: int = 365
) -> Any:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    (directory / f"{name}.key").write_bytes(_pem_key(key))
    (directory / f"{name}.key").chmod(0o640)
    sans = [x509.DNSName(s[4:]) for s in SANS if s.startswith("DNS:")]
    sans += [x509.IPAddress(ipaddress.ip_address(s[3:])) for s in SANS if s.startswith("IP:")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "db1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    (directory / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / f"{name}.crt").chmod(0o644)
    return key


def _ca_key_id(ca: tuple[Any, x509.Certificate]) -> str:
    digest = x509.SubjectKeyIdentifier.from_public_key(ca[0].public_key()).digest
    return probe_mod._hex(digest)


def _probe(
    directory: Path, identities: list[dict[str, str]] | None = None, **options: Any
) -> dict[str, Any]:
    identities = identities or [{"name": "host", "group": GROUP}]
    kwargs: dict[str, Any] = {
        "curve": "secp256r1",
        "renewal_days": 30,
        "key_mode": "0640",
        "cert_mode": "0644",
        "now": NOW,
        "owner": OWNER,
        "cert_group": GROUP,
        **options,
    }
    return probe_mod.probe(directory, identities, **kwargs)


def _decide(result: dict[str, Any], ca_key_id: str) -> dict[str, str]:
    identities = [{"name": "host", "group": GROUP, "cn": "db1"}]
    out = pki.pki_certificates_to_sign(
        identities, result["key_files"], result["cert_files"], ca_key_id=ca_key_id, sans=SANS
    )
    return {i["name"]: i["reason"] for i in out}


@pytest.fixture
def ca() -> tuple[Any, x509.Certificate]:
    return _ca()


def test_a_converged_identity_needs_nothing(tmp_path: Path, ca: Any) -> None:
    _write_identity(tmp_path, "host", ca)
    result = _probe(tmp_path)
    key, cert = result["key_files"][0], result["cert_files"][0]
    assert key["ok"] and not key["changed"], key
    assert cert["attributes_ok"] and not cert["failed"], cert
    assert cert["public_key_fingerprints"] == key["fingerprint"]
    assert sorted(cert["subject_alt_name"]) == sorted(SANS)
    assert result["groups_missing"] == []
    assert _decide(result, _ca_key_id(ca)) == {}


def test_a_key_mode_drift_fixes_the_mode_and_keeps_the_certificate(tmp_path: Path, ca: Any) -> None:
    _write_identity(tmp_path, "host", ca)
    (tmp_path / "host.key").chmod(0o600)
    result = _probe(tmp_path)
    key = result["key_files"][0]
    assert not key["ok"] and not key["changed"], key
    assert "0600, not" in key["reason"], key
    assert _decide(result, _ca_key_id(ca)) == {}


@pytest.mark.parametrize("content", [b"", b"garbage\n", b"-----BEGIN PRIVATE KEY-----\n"])
def test_an_unreadable_key_is_remade_and_its_certificate_signed(
    tmp_path: Path, ca: Any, content: bytes
) -> None:
    _write_identity(tmp_path, "host", ca)
    (tmp_path / "host.key").write_bytes(content)
    result = _probe(tmp_path)
    key = result["key_files"][0]
    assert key["changed"] and not key["ok"] and key["reason"].startswith("unreadable"), key
    assert _decide(result, _ca_key_id(ca)) == {"host": "does not match the key"}


def test_a_key_on_another_curve_is_remade(tmp_path: Path, ca: Any) -> None:
    _write_identity(tmp_path, "host", ca)
    (tmp_path / "host.key").write_bytes(_pem_key(ec.generate_private_key(ec.SECP384R1())))
    key = _probe(tmp_path)["key_files"][0]
    assert key["changed"] and key["reason"] == "not EC secp256r1", key


def test_a_missing_certificate_is_signed(tmp_path: Path, ca: Any) -> None:
    _write_identity(tmp_path, "host", ca)
    (tmp_path / "host.crt").unlink()
    result = _probe(tmp_path)
    assert result["cert_files"][0]["failed"]
    assert _decide(result, _ca_key_id(ca)) == {"host": "no readable certificate"}


def test_a_certificate_near_its_end_is_renewed(tmp_path: Path, ca: Any) -> None:
    _write_identity(tmp_path, "host", ca, days=10)
    result = _probe(tmp_path)
    assert result["cert_files"][0]["valid_at"] == {"renewal": False}
    assert _decide(result, _ca_key_id(ca)) == {"host": "expires within the renewal window"}


def test_a_certificate_of_another_ca_or_key_is_signed(tmp_path: Path, ca: Any) -> None:
    _write_identity(tmp_path, "host", ca)
    assert _decide(_probe(tmp_path), _ca_key_id(_ca())) == {"host": "issued by another CA"}
    (tmp_path / "host.key").write_bytes(_pem_key(ec.generate_private_key(ec.SECP256R1())))
    (tmp_path / "host.key").chmod(0o640)
    assert _decide(_probe(tmp_path), _ca_key_id(ca)) == {"host": "does not match the key"}


def test_a_certificate_mode_drift_is_reported(tmp_path: Path, ca: Any) -> None:
    _write_identity(tmp_path, "host", ca)
    (tmp_path / "host.crt").chmod(0o664)
    cert = _probe(tmp_path)["cert_files"][0]
    assert not cert["attributes_ok"] and "0664" in cert["attributes"], cert


def test_a_missing_group_is_named(tmp_path: Path) -> None:
    result = _probe(tmp_path, [{"name": "host", "group": "mdus-no-such-group"}])
    assert result["groups_missing"] == ["mdus-no-such-group"]
    assert result["key_files"][0]["reason"] == "missing"


def _write_ca(directory: Path) -> tuple[Any, x509.Certificate]:
    ca = _ca()
    directory.chmod(0o700)
    (directory / "ca.key").write_bytes(_pem_key(ca[0]))
    (directory / "ca.key").chmod(0o600)
    (directory / "ca.crt").write_bytes(ca[1].public_bytes(serialization.Encoding.PEM))
    (directory / "ca.crt").chmod(0o644)
    return ca


def _probe_ca(directory: Path, common_name: str = "lab CA") -> dict[str, Any]:
    return probe_mod.probe(
        directory,
        [{"name": "ca", "group": ""}],
        curve="secp384r1",
        renewal_days=0,
        key_mode="0600",
        cert_mode="0644",
        owner="",
        cert_group="",
        dir_mode="0700",
        ca_common_name=common_name,
        now=NOW,
    )


def test_a_good_lab_ca_needs_no_task_and_gives_its_key_id(tmp_path: Path) -> None:
    ca = _write_ca(tmp_path)
    result = _probe_ca(tmp_path)
    assert result["ca_ok"], result["ca_reason"]
    assert result["cert_files"][0]["subject_key_identifier"] == _ca_key_id(ca)


@pytest.mark.parametrize(
    ("drift", "reason"),
    [
        (lambda d: d.chmod(0o755), "directory: :"),
        (lambda d: (d / "ca.key").chmod(0o644), "key: :"),
        (lambda d: (d / "ca.crt").unlink(), "certificate: missing"),
        (lambda d: (d / "ca.key").write_bytes(_pem_key(_ca()[0])), "does not match the key"),
        (lambda d: (d / "ca.key").write_bytes(b"x"), "key: unreadable"),
    ],
    ids=["dir-mode", "key-mode", "no-cert", "other-key", "bad-key"],
)
def test_a_drifted_lab_ca_is_repaired(tmp_path: Path, drift: Any, reason: str) -> None:
    _write_ca(tmp_path)
    drift(tmp_path)
    result = _probe_ca(tmp_path)
    assert not result["ca_ok"] and reason in result["ca_reason"], result["ca_reason"]


def test_a_ca_of_another_name_is_repaired(tmp_path: Path) -> None:
    _write_ca(tmp_path)
    assert _probe_ca(tmp_path, "MDUS lab CA")["ca_reason"] == "another common name"
