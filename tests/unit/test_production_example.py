"""inventories/production-example works as shipped, so it cannot rot again.

Without SSH or real hosts: every playbook passes ``--syntax-check`` against it, and
site.yml's preflight (playbooks/preflight.yml: the topology read and every role's input
checks) runs against it with the local connection, once with real-looking secrets (it
passes) and once with the shipped vault (every placeholder secret is refused, named by its
variable). The database hosts' real state is read from an empty scratch directory (no
cluster: a first deployment), whatever this machine runs.

The example vault is encrypted with the password its README documents.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_refusal_output import REPO

INVENTORY = REPO / "inventories/production-example"
LAB = REPO / "inventories/lab"
VAULT = INVENTORY / "group_vars/all/vault.yml"
VAULT_PASSWORD = "change-me-example"  # documented in the inventory's README.md
BIN = Path(sys.executable).parent
MARKER = "CHANGE-ME"


def _hosts(node: dict[str, Any]) -> list[str]:
    found = list((node.get("hosts") or {}).keys())
    for child in (node.get("children") or {}).values():
        found += _hosts(child or {})
    return found


HOSTS = sorted(set(_hosts(yaml.safe_load((INVENTORY / "hosts.yml").read_text())["all"])))


def _env(tmp_path: Path) -> dict[str, str]:
    pki = tmp_path / "pki"
    pki.mkdir(exist_ok=True)
    # pki_mode provided: the preflight checks the files exist on the controller.
    files = [
        f"{h}{suffix}.{ext}"
        for h in HOSTS
        for suffix in ("", "-monitoring", "-pgbackrest", "-pgbouncer")
        for ext in ("crt", "key")
    ]
    for name in ["ca.crt", *files]:
        (pki / name).write_text("placeholder\n")
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env.update(
        ANSIBLE_ROLES_PATH=str(REPO / "roles"), ANSIBLE_STRATEGY="linear", MDUS_PKI_DIR=str(pki)
    )
    return env


def _vault_password_file(tmp_path: Path) -> Path:
    path = tmp_path / "vault-password"
    path.write_text(VAULT_PASSWORD + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The shipped vault, decrypted once."""
    return _vault(tmp_path_factory.mktemp("vault"))


def _vault(tmp_path: Path) -> dict[str, str]:
    result = subprocess.run(
        [str(BIN / "ansible-vault"), "view", "--vault-password-file",
         str(_vault_password_file(tmp_path)), str(VAULT)],
        capture_output=True, text=True, check=True, timeout=60, env=_env(tmp_path),
    )  # fmt: skip
    return yaml.safe_load(result.stdout)


def _preflight(tmp_path: Path, extra_vars: dict[str, str] | None = None) -> tuple[int, str]:
    scratch = tmp_path / "scratch"
    command = [
        str(BIN / "ansible-playbook"),
        "-i", str(INVENTORY),
        "--vault-password-file", str(_vault_password_file(tmp_path)),
        # Every host is this machine: no SSH, no sudo, this Python.
        "-c", "local",
        "-e", "ansible_become=false",
        "-e", f"ansible_python_interpreter={sys.executable}",
        # The topology read finds no cluster (a first deployment).
        "-e", f"postgresql_data_dir={scratch}/data",
        "-e", f"topology_record_path={scratch}/mdus-topology.json",
        "-e", f"topology_fence_marker={scratch}/mdus-fenced",
    ]  # fmt: skip
    if extra_vars:
        secrets_file = tmp_path / "secrets.yml"
        secrets_file.write_text(yaml.safe_dump(extra_vars))
        command += ["-e", f"@{secrets_file}"]
    result = subprocess.run(
        [*command, str(REPO / "playbooks/preflight.yml")],
        capture_output=True, text=True, env=_env(tmp_path), check=False, timeout=300,
    )  # fmt: skip
    return result.returncode, result.stdout + result.stderr


def test_every_playbook_passes_syntax_check(tmp_path: Path) -> None:
    playbooks = [REPO / "site.yml", *sorted((REPO / "playbooks").glob("*.yml"))]
    result = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(INVENTORY), "--vault-password-file",
         str(_vault_password_file(tmp_path)), "--syntax-check", *map(str, playbooks)],
        capture_output=True, text=True, env=_env(tmp_path), check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_preflight_passes_with_real_secrets(tmp_path: Path, vault: dict[str, str]) -> None:
    real = {name: secrets.token_urlsafe(32) for name in vault}
    rc, output = _preflight(tmp_path, real)
    assert rc == 0, output
    for host in HOSTS:
        assert re.search(
            rf"^{re.escape(host)}\s+: ok=\d+\s+changed=0\s+.*failed=0", output, re.M
        ), output
    # PgBouncer's checks (its lookup lines on both database hosts among them) ran and passed:
    # one task, which fails on any refusal (rc 0 above: none).
    assert "TASK [pgbouncer : Check the PgBouncer input (" in output
    assert "Check the top-level route's receiver exists and delivers alerts" in output
    for value in real.values():
        assert value not in output, "a secret reached the output"


def test_shipped_vault_is_refused_naming_each_variable(
    tmp_path: Path, vault: dict[str, str]
) -> None:
    rc, output = _preflight(tmp_path)
    assert rc == 2, output
    flat = " ".join(output.split())
    # The first refusal of each host: database hosts (postgresql), the repository host
    # (pgbackrest), the monitoring host (monitoring_server).
    for variable in (
        "postgresql_replication_password",
        "postgresql_users[0].password",
        "pgbackrest_cipher_pass",
        "monitoring_server_alertmanager_smtp.auth_password",
    ):
        assert variable in flat, output
    assert "Refusing the example placeholder (CHANGE-ME)" in flat
    assert re.search(r"failed=0", output) is None, output  # every host refused
    for value in vault.values():
        assert value not in output, "a placeholder secret reached the output"


def test_vault_holds_placeholders_for_every_reference(vault: dict[str, str]) -> None:
    assert vault, "the example vault is empty"
    assert all(MARKER in str(value) for value in vault.values()), vault.keys()
    referenced: set[str] = set()
    for path in INVENTORY.rglob("*.yml"):
        if path != VAULT:
            referenced |= set(re.findall(r"\bvault_[a-z0-9_]+", path.read_text()))
    assert referenced == set(vault), (referenced, set(vault))
    # Every vault variable is listed in the README's table.
    readme = (INVENTORY / "README.md").read_text()
    assert [name for name in vault if f"`{name}`" not in readme] == []


def _group_var_names(inventory: Path) -> set[str]:
    names: set[str] = set()
    for path in (inventory / "group_vars").rglob("*.yml"):
        if path.name != "vault.yml":
            names |= set((yaml.safe_load(path.read_text()) or {}).keys())
    return names


def test_every_lab_variable_is_here_or_explained() -> None:
    """What the lab sets for a working platform is set here too, or the README says why."""
    readme = (INVENTORY / "README.md").read_text()
    explained = set(re.findall(r"`([a-z_]+)`", readme.split("Set in the lab only", 1)[1]))
    missing = _group_var_names(LAB) - _group_var_names(INVENTORY) - explained
    assert missing == set(), f"set these in {INVENTORY} or explain them in its README: {missing}"
