"""The postgresql role's list of setting names is PostgreSQL 15's own, and every name the
role itself writes is on it (or belongs to a preloaded library)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

VARS = yaml.safe_load((Path(__file__).parents[2] / "roles/postgresql/vars/main.yml").read_text())
POSTGRES = "/usr/lib/postgresql/15/bin/postgres"


def test_known_settings_are_postgresql_15s() -> None:
    out = subprocess.run(
        [POSTGRES, "--describe-config"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    described = sorted({line.split("\t")[0] for line in out.splitlines() if line})
    assert VARS["__postgresql_known_settings"] == described


def test_the_role_writes_only_known_settings() -> None:
    known = {name.lower() for name in VARS["__postgresql_known_settings"]}
    written = set(VARS["__postgresql_base_settings"]) - {"include_dir"}
    unknown = {
        n for n in written if n.lower() not in known and not n.startswith("pg_stat_statements.")
    }
    assert unknown == set()
