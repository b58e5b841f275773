#!/usr/bin/python3
"""Ansible module: read every TLS identity of one host in one call, read-only.

For each identity (<dir>/<name>.key and <name>.crt): whether the key is a readable EC
private key on the role's curve with the managed owner, group and mode, and what its
certificate says (common name, subjectAltNames, authority key identifier, public key,
validity), in the shapes of community.crypto's openssl_privatekey and
x509_certificate_info results, so the role's filter pki_certificates_to_sign decides
from them. One module call instead of one openssl_privatekey and one
x509_certificate_info per identity; the role runs those modules only for what this
probe finds missing or drifted.
"""

from __future__ import annotations

import binascii
import datetime
import grp
import hashlib
import pwd
import stat
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: mdus_pki_probe
short_description: Read every TLS identity of a host (keys and certificates), read-only
description:
  - For each identity, the key's validity (EC on the given curve), owner, group and mode,
    and the certificate's subject, subjectAltNames, authority key identifier, public key
    fingerprint, renewal window, owner and mode. Never changes anything.
options:
  dir: {type: path, required: true, description: Directory of the keys and certificates.}
  identities:
    type: list
    elements: dict
    required: true
    description: Each with name (file stem) and group (the key's group).
  curve: {type: str, default: secp256r1, description: Curve every key must use.}
  renewal_days: {type: int, default: 30, description: A certificate ending within it is due.}
  key_mode: {type: str, default: "0640", description: Mode of every key.}
  cert_mode: {type: str, default: "0644", description: Mode of every certificate.}
  owner: {type: str, default: root, description: Owner of every file (empty - not checked).}
  cert_group:
    type: str
    default: root
    description: Group of every certificate (empty - not checked); a key's is its identity's.
  dir_mode: {type: str, default: "", description: Mode of dir (empty - not checked).}
  ca_common_name:
    type: str
    default: ""
    description: The first identity is a self-signed CA of this name; say if it is usable.
"""

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    HAS_CRYPTOGRAPHY = True
except ImportError:  # the role installs python3-cryptography before it probes
    HAS_CRYPTOGRAPHY = False


def _hex(data: bytes) -> str:
    """Colon-separated lower-case hex, as community.crypto prints identifiers."""
    text = binascii.hexlify(data).decode("ascii")
    return ":".join(text[i : i + 2] for i in range(0, len(text), 2))


def _fingerprint(public_key: Any) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _hex(hashlib.sha256(der).digest())


def _attributes(path: Path, owner: str, group: str, mode: str) -> str | None:
    """Why the file's owner, group or mode differ from the managed ones, or None."""
    info = path.stat()
    try:
        user_name = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        user_name = str(info.st_uid)
    try:
        group_name = grp.getgrgid(info.st_gid).gr_name
    except KeyError:
        group_name = str(info.st_gid)
    actual = f"{stat.S_IMODE(info.st_mode):04o}"
    # An empty owner or group is not managed (the controller's CA: whoever runs Ansible).
    user_name, group_name = (user_name if owner else ""), (group_name if group else "")
    if (user_name, group_name, actual) != (owner, group, mode.zfill(4)):
        return f"{user_name}:{group_name} {actual}, not {owner}:{group} {mode.zfill(4)}"
    return None


def read_key(path: Path, owner: str, group: str, curve: str, mode: str) -> dict[str, Any]:
    """The key as openssl_privatekey would leave it: changed when it must be (re)made,
    ok when nothing (content, owner, group, mode) needs a change."""
    if not path.is_file():
        return {"changed": True, "ok": False, "reason": "missing", "fingerprint": {}}
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as error:
        reason = f"unreadable: {str(error).split('.')[0]}"
        return {"changed": True, "ok": False, "reason": reason, "fingerprint": {}}
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != curve:
        return {"changed": True, "ok": False, "reason": f"not EC {curve}", "fingerprint": {}}
    drift = _attributes(path, owner, group, mode)
    return {
        "changed": False,
        "ok": drift is None,
        "reason": drift or "",
        "fingerprint": {"sha256": _fingerprint(key.public_key())},
    }


def _names(cert: Any) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    out = []
    for name in ext.value:
        if isinstance(name, x509.DNSName):
            out.append(f"DNS:{name.value}")
        elif isinstance(name, x509.IPAddress):
            out.append(f"IP:{name.value.compressed}")
        else:  # another kind than the role writes: it cannot match the wanted names
            out.append(f"{type(name).__name__}:{name.value}")
    return out


def _authority_key_id(cert: Any) -> str | None:
    try:
        ext = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    except x509.ExtensionNotFound:
        return None
    return _hex(ext.value.key_identifier) if ext.value.key_identifier else None


def _validity(cert: Any) -> tuple[datetime.datetime, datetime.datetime]:
    """not_before and not_after as aware UTC times (cryptography 38 has naive ones)."""
    start = getattr(cert, "not_valid_before_utc", None)
    end = getattr(cert, "not_valid_after_utc", None)
    if start is None or end is None:
        start = cert.not_valid_before.replace(tzinfo=datetime.UTC)
        end = cert.not_valid_after.replace(tzinfo=datetime.UTC)
    return start, end


def read_certificate(
    path: Path, owner: str, group: str, mode: str, *, renewal_days: int, now: datetime.datetime
) -> dict[str, Any]:
    """What x509_certificate_info says of the certificate; failed when it is missing or
    unreadable (the role signs one then)."""
    if not path.is_file():
        return {"failed": True, "msg": "missing", "attributes_ok": False}
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError as error:
        return {"failed": True, "msg": f"unreadable: {error}", "attributes_ok": False}
    start, end = _validity(cert)
    renewal_at = now + datetime.timedelta(days=renewal_days)
    common_names = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    drift = _attributes(path, owner, group, mode)
    try:
        ski = _hex(cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest)
    except x509.ExtensionNotFound:
        ski = None
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    return {
        "failed": False,
        "valid_at": {"renewal": start <= renewal_at <= end},
        "subject": {"commonName": common_names[0].value if common_names else None},
        "subject_alt_name": _names(cert),
        "authority_key_identifier": _authority_key_id(cert),
        "subject_key_identifier": ski,
        "is_ca": is_ca,
        "self_signed": cert.issuer == cert.subject,
        "valid_now": start <= now <= end,
        "public_key_fingerprints": {"sha256": _fingerprint(cert.public_key())},
        "not_after": end.strftime("%Y%m%d%H%M%SZ"),
        "attributes_ok": drift is None,
        "attributes": drift or "",
    }


def missing_groups(identities: list[dict[str, Any]]) -> list[str]:
    out = []
    for group in dict.fromkeys(identity["group"] for identity in identities if identity["group"]):
        try:
            grp.getgrnam(group)
        except KeyError:
            out.append(group)
    return out


def probe(
    directory: Path,
    identities: list[dict[str, Any]],
    *,
    curve: str,
    renewal_days: int,
    key_mode: str,
    cert_mode: str,
    owner: str = "root",
    cert_group: str = "root",
    dir_mode: str = "",
    ca_common_name: str = "",
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """Every identity's key and certificate; with ca_common_name, also whether the first
    identity is a usable self-signed CA of that name (ca_ok, ca_reason)."""
    now = now or datetime.datetime.now(datetime.UTC)
    keys, certs = [], []
    for identity in identities:
        item = {"name": identity["name"]}
        key_path, cert_path = directory / f"{item['name']}.key", directory / f"{item['name']}.crt"
        key = read_key(key_path, owner, identity["group"], curve, key_mode)
        keys.append({"item": item, **key})
        cert = read_certificate(
            cert_path, owner, cert_group, cert_mode, renewal_days=renewal_days, now=now
        )
        certs.append({"item": item, **cert})
    result: dict[str, Any] = {
        "groups_missing": missing_groups(identities),
        "key_files": keys,
        "cert_files": certs,
    }
    if dir_mode:
        drift = _attributes(directory, "", "", dir_mode) if directory.is_dir() else "missing"
        result["dir_ok"], result["dir_reason"] = drift is None, drift or ""
    if ca_common_name and identities:
        reason = ca_problem(keys[0], certs[0], ca_common_name) or (
            "" if result.get("dir_ok", True) else f"directory: {result['dir_reason']}"
        )
        result["ca_ok"], result["ca_reason"] = not reason, reason
    return result


def ca_problem(key: dict[str, Any], cert: dict[str, Any], common_name: str) -> str:
    """Why the CA must be made or repaired (key, certificate, owner, mode), or ''."""
    checks = [
        (key["ok"], f"key: {key['reason']}"),
        (not cert["failed"], f"certificate: {cert.get('msg')}"),
        (cert.get("attributes_ok"), f"certificate: {cert.get('attributes')}"),
        ((cert.get("subject") or {}).get("commonName") == common_name, "another common name"),
        (cert.get("is_ca") and cert.get("self_signed"), "not a self-signed CA certificate"),
        (cert.get("valid_now"), "not valid now"),
        (
            cert.get("public_key_fingerprints") == key["fingerprint"],
            "certificate does not match the key",
        ),
    ]
    return next((reason for ok, reason in checks if not ok), "")


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "dir": {"type": "path", "required": True},
            "identities": {"type": "list", "elements": "dict", "required": True},
            "curve": {"type": "str", "default": "secp256r1"},
            "renewal_days": {"type": "int", "default": 30},
            "key_mode": {"type": "str", "default": "0640"},
            "cert_mode": {"type": "str", "default": "0644"},
            "owner": {"type": "str", "default": "root"},
            "cert_group": {"type": "str", "default": "root"},
            "dir_mode": {"type": "str", "default": ""},
            "ca_common_name": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg="python3-cryptography is missing on the host (pki install.yml)")
    params = module.params
    result = probe(
        Path(params["dir"]),
        params["identities"],
        curve=params["curve"],
        renewal_days=params["renewal_days"],
        key_mode=params["key_mode"],
        cert_mode=params["cert_mode"],
        owner=params["owner"],
        cert_group=params["cert_group"],
        dir_mode=params["dir_mode"],
        ca_common_name=params["ca_common_name"],
    )
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
