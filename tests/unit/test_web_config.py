"""One web configuration shape for the exporters and Prometheus
(plugins/filter/prometheus_web.py).

The filter builds exporter-toolkit's web config; the web-config.yml.j2 templates of
monitoring_agent and monitoring_server only add their header, so the same input gives the
same configuration in both roles. Rendered with Ansible's own templating, as on a run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import EncryptedString, VaultLib, VaultSecret, VaultSecretsContext
from ansible.template import Templar, trust_as_template

from tests.modload import load_module

REPO = Path(__file__).resolve().parents[2]
web = load_module("prometheus_web_filter", REPO / "plugins/filter/prometheus_web.py")

PKI = "/etc/mdus-pki"
CERT, KEY, CA = f"{PKI}/monitoring.crt", f"{PKI}/monitoring.key", f"{PKI}/ca.crt"
HASH = "$2y$10$Rw3CU7fFpmQkHXZ8Ug9VHeb2i5Jmr8LFA1FOzKTxkPhQ3vD2jHwrm"
TLS = {"cert_file": CERT, "key_file": KEY, "min_version": "TLS12"}
MTLS = {**TLS, "client_auth_type": "RequireAndVerifyClientCert", "client_ca_file": CA}

CASES = [
    pytest.param(("", "", "", {}), {}, id="nothing"),
    pytest.param((CERT, KEY, "", {}), {"tls_server_config": TLS}, id="tls"),
    pytest.param((CERT, KEY, CA, {}), {"tls_server_config": MTLS}, id="mutual-tls"),
    # A client CA means something only with TLS on.
    pytest.param(("", "", CA, {}), {}, id="ca-without-certificate"),
    pytest.param(
        ("", "", "", {"prometheus": HASH}),
        {"basic_auth_users": {"prometheus": HASH}},
        id="basic-auth",
    ),
    pytest.param(
        (CERT, KEY, CA, {"zed": HASH, "Alice": HASH}),
        {"tls_server_config": MTLS, "basic_auth_users": {"Alice": HASH, "zed": HASH}},
        id="mutual-tls-and-basic-auth",
    ),
]

ROLES = {
    "monitoring_agent": "monitoring_agent_web",
    "monitoring_server": "monitoring_server_web",
}


def render(role: str, cert: Any, key: Any, ca: Any, users: Any) -> str:
    prefix = ROLES[role]
    variables = {
        "ansible_managed": "Ansible managed",
        f"{prefix}_tls_cert_file": cert,
        f"{prefix}_tls_key_file": key,
        f"{prefix}_tls_client_ca_file": ca,
        f"{prefix}_basic_auth_users": users,
    }
    templar = Templar(loader=DataLoader(), variables=variables)
    text = (REPO / "roles" / role / "templates/web-config.yml.j2").read_text()
    return str(templar.template(trust_as_template(text)))


def body(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("#")]


@pytest.mark.parametrize(("args", "expected"), CASES)
def test_filter_builds_the_web_config(args: tuple[Any, ...], expected: dict[str, Any]) -> None:
    cert, key, ca, users = args
    assert web.prometheus_web_config(cert, key, ca, users) == expected


def test_filter_orders_users_as_jinja_dictsort_and_refuses_a_list() -> None:
    config = web.prometheus_web_config(users={"zed": HASH, "Bob": HASH, "alice": HASH})
    assert list(config["basic_auth_users"]) == ["alice", "Bob", "zed"]
    with pytest.raises(TypeError, match="users must map"):
        web.prometheus_web_config(users=["prometheus"])


@pytest.mark.parametrize(("args", "expected"), CASES)
def test_both_roles_render_the_same_config(args: tuple[Any, ...], expected: dict[str, Any]) -> None:
    agent = render("monitoring_agent", *args)
    server = render("monitoring_server", *args)
    assert agent.startswith("#\n# Ansible managed\n#\n"), agent
    assert body(agent) == body(server)
    assert (yaml.safe_load(agent) or {}) == expected
    # keys in exporter-toolkit's documented order (tls_server_config first), 2-space indent
    if expected:
        assert body(agent)[0] == next(iter(expected)) + ":"
        assert body(agent)[1].startswith("  ") and not body(agent)[1].startswith("   ")


def test_vaulted_hash_is_written_in_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bcrypt hash from the vault reaches the file as text, not as `!vault` ciphertext
    (to_nice_yaml keeps the ciphertext of a decrypted value that still carries its tag)."""
    secret = VaultSecret(b"test-only-vault-password")
    monkeypatch.setattr(VaultSecretsContext, "_current", VaultSecretsContext([("default", secret)]))
    ciphertext = VaultLib([("default", secret)]).encrypt(HASH).decode()
    users = {"prometheus": EncryptedString(ciphertext=ciphertext)}
    for role in ROLES:
        text = render(role, CERT, KEY, CA, users)
        assert "!vault" not in text and "ANSIBLE_VAULT" not in text, text
        assert yaml.safe_load(text)["basic_auth_users"] == {"prometheus": HASH}
    config = web.prometheus_web_config(users=users)
    assert type(config["basic_auth_users"]["prometheus"]) is str
