"""Client-side helpers: reach the lab through PgBouncer from the controller, as an
application does, and run the snippets of docs/clients.md."""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from tests.integration.pglab import REPO, lab_secret

CLIENTS_DOC = REPO / "docs" / "clients.md"
SNIPPET_RE = re.compile(r"```python\n# snippet: (?P<name>[\w-]+)\n(?P<code>.*?)```", re.S)


def container_ip(name: str) -> str:
    """The container's address on the lab network (its certificate names it)."""
    out = subprocess.run(
        [
            "docker",
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            name,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return out.stdout.strip()


def lab_ca() -> str:
    return str(Path(os.environ["MDUS_LAB_DIR"]) / "pki" / "ca.crt")


def bouncer_dsn(host: str, db: str = "mdus_db", user: str = "mdus_app") -> str:
    """libpq DSN to PgBouncer on a lab host, verify-full against the lab CA."""
    return (
        f"host={container_ip(host)} port=6432 dbname={db} user={user} "
        f"password={lab_secret(user)} sslmode=verify-full sslrootcert={lab_ca()} "
        "connect_timeout=10"
    )


def snippets() -> dict[str, str]:
    """The python snippets of docs/clients.md by name."""
    found = {m["name"]: m["code"] for m in SNIPPET_RE.finditer(CLIENTS_DOC.read_text())}
    assert found, f"no snippets in {CLIENTS_DOC}"
    return found


def new_app_user(dsn: str) -> str:
    """An application user created by mdus_app itself (RLS lets it insert its own row)."""
    user_id = str(uuid.uuid4())
    with psycopg.connect(dsn, prepare_threshold=None) as conn, conn.transaction():
        conn.execute("SELECT mdus_set_app_user(%s)", (user_id,))
        conn.execute(
            "INSERT INTO users (id, username, email, password_hash) VALUES (%s, %s, %s, 'x')",
            (user_id, f"client-{user_id[:8]}", f"{user_id[:8]}@clients.test"),
        )
    return user_id


@contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def run_snippet(
    name: str,
    host: str,
    user_id: str,
    *,
    workers: int = 2,
    rounds: int = 12,
    env: dict[str, str] | None = None,
) -> list[str]:
    """Exec the common block and one snippet, then call its seed_operations() `rounds`
    times on each of `workers` concurrent connections. Returns the document ids."""
    code = snippets()
    values = {
        "MDUS_DB_HOST": container_ip(host),
        "MDUS_DB_PASSWORD": lab_secret("mdus_app"),
        "MDUS_DB_CA": lab_ca(),
        **(env or {}),
    }
    namespace: dict[str, Any] = {"__name__": f"snippet_{name.replace('-', '_')}"}
    with environment(values):
        exec(compile(code["common"], "docs/clients.md:common", "exec"), namespace)
        exec(compile(code[name], f"docs/clients.md:{name}", "exec"), namespace)
        operation: Callable[..., Any] = namespace["seed_operations"]
        close: Callable[[], Any] = namespace["close"]
        if inspect.iscoroutinefunction(operation):
            return asyncio.run(
                _run_async(
                    namespace.get("open_pool"),
                    operation,
                    close,
                    user_id,
                    workers=workers,
                    rounds=rounds,
                )
            )
        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                batches = pool.map(
                    lambda _: [operation(user_id) for _ in range(rounds)], range(workers)
                )
                return [doc for batch in batches for doc in batch]
        finally:
            close()


async def _run_async(
    open_pool: Callable[[], Any] | None,
    operation: Callable[..., Any],
    close: Callable[[], Any],
    user_id: str,
    *,
    workers: int,
    rounds: int,
) -> list[str]:
    async def worker() -> list[str]:
        return [await operation(user_id) for _ in range(rounds)]

    if open_pool is not None:
        await open_pool()
    try:
        batches = await asyncio.gather(*(worker() for _ in range(workers)))
    finally:
        await close()
    return [doc for batch in batches for doc in batch]
