"""The exporter-toolkit web configuration (``--web.config.file``) of every Prometheus
component of the platform: the node and PostgreSQL exporters (monitoring_agent) and
Prometheus itself (monitoring_server) share one shape::

    {{ cert_file | prometheus_web_config(key_file=..., client_ca_file=..., users=...)
       | to_nice_yaml(indent=2, sort_keys=False) }}

- a certificate file turns TLS on (TLS 1.2 at least) with its key file; a client CA file,
  with TLS on, requires a client certificate signed by that CA (mutual TLS);
- ``users`` (user name -> bcrypt hash) turns basic auth on.

Nothing set gives ``{}`` (the roles write the file only when TLS or basic auth is on).
Values come back as plain ``str``: a vault-encrypted hash decrypts to a ``str`` tagged with
its ciphertext, and to_nice_yaml would write that tag back as ``!vault`` ciphertext, which
the exporters cannot read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MIN_VERSION = "TLS12"
CLIENT_AUTH = "RequireAndVerifyClientCert"


def _text(value: Any) -> str:
    """``value`` as a plain ``str``, without Ansible's tags (a vault-encrypted value's
    ``str()`` still carries its ciphertext; a copy of type ``str`` carries nothing)."""
    text = str(value)
    return text if type(text) is str else str.__str__(text)


def _user_order(user: Any) -> str:
    return _text(user).lower()  # Jinja's dictsort order (case-insensitive)


def prometheus_web_config(
    cert_file: Any = "",
    key_file: Any = "",
    client_ca_file: Any = "",
    users: Mapping[Any, Any] | None = None,
) -> dict[str, Any]:
    """The web configuration as a dict (keys of exporter-toolkit's web config file)."""
    config: dict[str, Any] = {}
    if cert_file:
        tls: dict[str, str] = {
            "cert_file": _text(cert_file),
            "key_file": _text(key_file or ""),
            "min_version": MIN_VERSION,
        }
        if client_ca_file:
            tls["client_auth_type"] = CLIENT_AUTH
            tls["client_ca_file"] = _text(client_ca_file)
        config["tls_server_config"] = tls
    if users is not None and not isinstance(users, Mapping):
        raise TypeError(f"users must map user names to bcrypt hashes, not {type(users).__name__}")
    if users:
        config["basic_auth_users"] = {
            _text(user): _text(users[user]) for user in sorted(users, key=_user_order)
        }
    return config


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"prometheus_web_config": prometheus_web_config}
