"""Filters of the pki role: which identities' certificates a run has to sign."""

from __future__ import annotations

from typing import Any


def _by_name(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["item"]["name"]: r for r in results if isinstance(r.get("item"), dict)}


def _reason(
    identity: dict[str, Any],
    key: dict[str, Any],
    cert: dict[str, Any],
    ca_key_id: str | None,
    sans: list[str],
) -> str | None:
    """Why this identity's certificate must be (re)signed, or None to keep it."""
    if not cert or cert.get("failed") or cert.get("skipped"):
        return "no readable certificate"
    key_fp = (key.get("fingerprint") or {}).get("sha256")
    checks = [
        ((cert.get("valid_at") or {}).get("renewal", False), "expires within the renewal window"),
        (
            (cert.get("subject") or {}).get("commonName") == identity["cn"],
            f"common name is not {identity['cn']}",
        ),
        (set(cert.get("subject_alt_name") or []) == set(sans), "subjectAltNames changed"),
        (
            not ca_key_id or cert.get("authority_key_identifier") == ca_key_id,
            "issued by another CA",
        ),
        (
            not key.get("changed")
            and bool(key_fp)
            and key_fp == (cert.get("public_key_fingerprints") or {}).get("sha256"),
            "does not match the key",
        ),
    ]
    return next((reason for ok, reason in checks if not ok), None)


def pki_certificates_to_sign(
    identities: list[dict[str, Any]],
    key_results: list[dict[str, Any]],
    cert_results: list[dict[str, Any]],
    *,
    ca_key_id: str | None,
    sans: list[str],
    force: bool = False,
) -> list[dict[str, Any]]:
    """The identities whose certificate a run signs, each with the reason.

    key_results and cert_results: what library/mdus_pki_probe.py read on the host, in the
    shapes of openssl_privatekey results (changed: the key is (re)made in this run) and of
    x509_certificate_info results (failed where the file is missing or unreadable);
    ca_key_id: the CA certificate's subject key identifier."""
    keys, certs = _by_name(key_results), _by_name(cert_results)
    out = []
    for identity in identities:
        name = identity["name"]
        reason = "pki_force_renew" if force else None
        reason = reason or _reason(
            identity, keys.get(name) or {}, certs.get(name) or {}, ca_key_id, sans
        )
        if reason:
            out.append({**identity, "reason": reason})
    return out


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"pki_certificates_to_sign": pki_certificates_to_sign}
