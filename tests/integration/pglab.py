"""Helpers shared by the molecule verifiers (testinfra) of every scenario."""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import testinfra

REPO = Path(__file__).resolve().parents[2]
PKI_DIR = "/etc/mdus-pki"
CONF_DIR = "/etc/postgresql/15/main"
DATA_DIR = "/var/lib/postgresql/15/main"
LOG_DIR = "/var/log/postgresql/15-main"
STANZA = "mdus"
REPO_PATH = "/var/lib/pgbackrest"
# repo2 on its own host: repo1's path + "-repo2" (the pgbackrest role's default; the lab
# scenario sets the same path for repo2 next to repo1)
REPO2_PATH = f"{REPO_PATH}-repo2"


def node(name: str) -> Any:
    """A lab container as a testinfra host."""
    return testinfra.get_host(f"docker://{name}")


def pgbackrest(host: Any, *args: str, env: str = "") -> Any:
    """Run pgbackrest for the stanza as postgres (the user of every pgBackRest process)."""
    prefix = f"env {env} " if env else ""
    quoted = " ".join(shlex.quote(arg) for arg in args)
    return host.run(f"runuser -u postgres -- {prefix}pgbackrest --stanza={STANZA} {quoted}")


def segment_in_repo(repo: Any, segment: str, path: str = REPO_PATH) -> bool:
    """Is the WAL segment in the archive of the repository at `path` on host `repo`?"""
    cmd = repo.run(f"find {path}/archive/{STANZA} -name '{segment}-*'")
    return cmd.rc == 0 and cmd.stdout.strip() != ""


def psql(host: Any, sql: str, db: str = "postgres", check: bool = True) -> str:
    """Run SQL as the postgres OS user over the local socket (peer) and return rows."""
    cmd = host.run("runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -Atq -d %s -c %s", db, sql)
    if check:
        assert cmd.rc == 0, f"psql failed: {cmd.stderr}"
    return cmd.stdout.strip()


def tcp_psql(
    host: Any, conninfo: str, sql: str, password: str | None = None
) -> tuple[int, str, str]:
    """Run SQL through TCP with a libpq connection string, from inside the host."""
    env = f"PGPASSWORD={password} " if password else ""
    cmd = host.run(f"{env}psql -X -Atq %s -c %s", conninfo, sql)
    return cmd.rc, cmd.stdout.strip(), cmd.stderr.strip()


@contextmanager
def temporary_login(host: Any, *grants: str) -> Iterator[tuple[str, str]]:
    """A throw-away login role with a random password; dropped afterwards."""
    name = f"verify_{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(18)
    psql(host, f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")
    for grant in grants:
        psql(host, f"GRANT {grant} TO {name}")
    try:
        yield name, password
    finally:
        psql(host, f"DROP ROLE IF EXISTS {name}")


def cgroup_memory_limit_mb(host: Any) -> int:
    """Memory limit of the container (cgroup v1 or v2), in MB."""
    lines = host.file("/proc/1/cgroup").content_string.splitlines()
    for line in lines:
        _, controllers, path = line.split(":", 2)
        parent = path.removesuffix("/init.scope")
        if controllers == "memory":
            raw = host.file(f"/sys/fs/cgroup/memory{parent}/memory.limit_in_bytes")
            return int(raw.content_string.strip()) // (1024 * 1024)
    for line in lines:
        if line.startswith("0::"):
            parent = line.split(":", 2)[2].removesuffix("/init.scope")
            raw = host.file(f"/sys/fs/cgroup{parent}/memory.max").content_string.strip()
            return int(raw) // (1024 * 1024)
    raise AssertionError("no memory cgroup found")


def lab_secret(name: str) -> str:
    """A throw-away password the scenario generated on the controller."""
    return (Path(os.environ["MDUS_LAB_DIR"]) / "secrets" / name).read_text().strip()


def molecule_playbook(
    playbook: str,
    extra_vars: dict[str, Any],
    limit: str | None = None,
    extra_inventory: Path | None = None,
    options: tuple[str, ...] = (),
    *,
    strategy: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a playbook of the repo against the running molecule scenario's inventory
    (`strategy`: an Ansible strategy instead of the one the Makefile chose)."""
    inventory = Path(os.environ["MOLECULE_INVENTORY_FILE"]).parent
    env = dict(os.environ)
    env.setdefault("MDUS_LAB_DIR", os.environ["MOLECULE_EPHEMERAL_DIRECTORY"] + "/lab")
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["ANSIBLE_ROLES_PATH"] = str(REPO / "roles")
    env.pop("ANSIBLE_FORCE_COLOR", None)  # molecule sets it; tests read the plain text
    env["ANSIBLE_NOCOLOR"] = "1"
    if strategy:
        env["ANSIBLE_STRATEGY"] = strategy
    cmd = ["ansible-playbook", "-i", str(inventory), str(REPO / playbook)]
    if extra_inventory:
        cmd[3:3] = ["-i", str(extra_inventory)]
    cmd += ["-e", json.dumps(extra_vars)]
    if limit:
        cmd += ["--limit", limit]
    cmd += list(options)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, check=False, timeout=600)


def recap(output: str) -> dict[str, int]:
    """Host -> changed count from an ansible-playbook PLAY RECAP."""
    return {
        host: int(changed)
        for host, changed in re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", output, re.M)
    }


def changed_tasks(output: str) -> list[str]:
    """'TASK name -> host' for every task or handler an ansible-playbook run reported as
    changed."""
    found, task = [], ""
    for line in output.splitlines():
        if line.startswith(("TASK [", "RUNNING HANDLER [")):
            task = line.split("[", 1)[1].split("]")[0]
        elif line.startswith("changed: ["):
            found.append(f"{task} -> {line[10:].split(']')[0]}")
    return found
