"""Fixtures: one throw-away PostgreSQL 15 cluster per session, a fresh database per test.

A database with all migrations applied is built once and copied (CREATE DATABASE ...
TEMPLATE) for every test that needs it, which takes a fraction of a second.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pgcluster import PG_BIN, PgCluster, start_cluster

REPO = Path(__file__).resolve().parents[2]
MIGRATE = REPO / "schema" / "migrate.py"
TEMPLATE_DB = "mdus_template_migrated"


@dataclass
class Result:
    """Outcome of one runner process."""

    rc: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.stdout)


def run_migrate(
    dsn: str, *args: str, directory: Path | None = None, env: dict[str, str] | None = None
) -> Result:
    cmd = [sys.executable, str(MIGRATE), *args, "--dsn", dsn]
    if directory is not None:
        cmd += ["--dir", str(directory)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120, check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def popen_migrate(
    dsn: str, *args: str, directory: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(MIGRATE), *args, "--dsn", dsn]
    if directory is not None:
        cmd += ["--dir", str(directory)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def schema_dump(dsn: str) -> str:
    """pg_dump --schema-only without comments/volatile lines, plus pg_partman's config."""
    out = subprocess.run(
        [str(PG_BIN / "pg_dump"), "--schema-only", "--no-comments", "-d", dsn],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    keep = [
        line
        for line in out.splitlines()
        if line.strip() and not line.startswith(("--", "\\restrict", "\\unrestrict"))
    ]
    with psycopg.connect(dsn) as conn:
        if not conn.execute("SELECT to_regclass('partman.part_config')").fetchone()[0]:
            return "\n".join(keep)
        rows = conn.execute(
            "SELECT parent_table, control, partition_type, partition_interval, premake,"
            " retention, retention_keep_table, infinite_time_partitions"
            " FROM partman.part_config ORDER BY parent_table"
        ).fetchall()
    keep += [repr(row) for row in rows]
    return "\n".join(keep)


def write_migration(directory: Path, filename: str, up: str, down: str | None = None) -> Path:
    text = f"-- migrate:up\n{up}\n"
    if down is not None:
        text += f"-- migrate:down\n{down}\n"
    path = directory / filename
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def cluster() -> Iterator[PgCluster]:
    pg = start_cluster()
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture(scope="session")
def admin_conn(cluster: PgCluster) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="session")
def template_db(cluster: PgCluster, admin_conn: psycopg.Connection[Any]) -> str:
    admin_conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
    result = run_migrate(cluster.dsn(TEMPLATE_DB), "migrate")
    assert result.rc == 2, result.stderr
    return TEMPLATE_DB


@pytest.fixture
def new_db(cluster: PgCluster, admin_conn: psycopg.Connection[Any]) -> Iterator[Callable[..., str]]:
    """Factory: new_db() an empty database, new_db(template=...) a copy; returns a DSN."""
    created: list[str] = []

    def make(template: str | None = None) -> str:
        name = f"t_{uuid.uuid4().hex[:10]}"
        clause = f" TEMPLATE {template}" if template else ""
        admin_conn.execute(f"CREATE DATABASE {name}{clause}")
        created.append(name)
        return cluster.dsn(name)

    yield make
    for name in created:
        admin_conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def empty_db(new_db: Callable[..., str]) -> str:
    return new_db()


@pytest.fixture
def migrated_db(new_db: Callable[..., str], template_db: str) -> str:
    return new_db(template=template_db)


@pytest.fixture
def db(migrated_db: str) -> Iterator[psycopg.Connection[Any]]:
    """Superuser connection (autocommit) to a fresh fully migrated database."""
    with psycopg.connect(migrated_db, autocommit=True) as conn:
        yield conn
