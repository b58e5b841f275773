"""plugins/filter/scram.py computes the verifier PostgreSQL itself stores for a password
(same salt and iterations give the same string), reuses a matching one and rejects a
wrong password."""

from __future__ import annotations

import base64
import secrets
from pathlib import Path
from typing import Any

import psycopg
import psycopg.sql

from tests.modload import load_module

scram = load_module("scram_filter", Path(__file__).resolve().parents[2] / "plugins/filter/scram.py")


def test_verifier_equals_postgresqls_own(admin_conn: psycopg.Connection[Any]) -> None:
    password = secrets.token_urlsafe(24)
    name = f"scram_{secrets.token_hex(4)}"
    with admin_conn.cursor() as cur:
        cur.execute("SET password_encryption = 'scram-sha-256'")
        cur.execute(
            psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                psycopg.sql.Identifier(name), psycopg.sql.Literal(password)
            )
        )
        cur.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (name,))
        row = cur.fetchone()
        cur.execute(psycopg.sql.SQL("DROP ROLE {}").format(psycopg.sql.Identifier(name)))
    assert row is not None
    stored = row[0]
    salt = base64.b64decode(stored.split("$")[1].split(":")[1])
    assert scram.scram_verifier(password, salt=salt) == stored
    assert scram.scram_verifier(password, stored) == stored  # kept: a re-run changes nothing
    assert scram.scram_verifier("another password", stored) != stored
    fresh = scram.scram_verifier(password)
    assert fresh != stored and scram.scram_matches(password, fresh)
    assert not scram.scram_matches("another password", fresh)


def test_non_ascii_and_prehashed_passwords_pass_through() -> None:
    assert scram.scram_verifier("pässwörd") == "pässwörd"
    hashed = scram.scram_verifier("x" * 20)
    assert scram.scram_verifier(hashed) == hashed
