"""The postgresql role's pg_hba/pg_ident refusals (pg_hba_refusals): every bad entry named
at once, good entries pass. The playbook path is in test_postgresql_refusals.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.modload import load_module

pg_hba = load_module(
    "pg_hba_filters", Path(__file__).parents[2] / "roles/postgresql/filter_plugins/pg_hba.py"
)
refusals = pg_hba.pg_hba_refusals

SSL = {"type": "hostssl", "database": "mdus", "user": "mdus_app", "address": "10.0.0.0/8"}
GOOD_HBA: list[dict[str, Any]] = [
    {
        "type": "local",
        "database": "all",
        "user": "postgres",
        "method": "peer",
        "options": "map=mdus",
    },
    {**SSL, "method": "scram-sha-256", "comment": "the application # through PgBouncer"},
    {**SSL, "user": "mdus_migrator", "method": "cert", "options": "clientcert=verify-full map=x"},
]
GOOD_IDENT = [{"map": "mdus", "system_user": "postgres", "db_user": "postgres"}]


def test_the_platform_entries_pass() -> None:
    assert refusals(GOOD_HBA, GOOD_IDENT) == []


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            {**SSL, "method": "scram-sha-256", "comment": "a\nhost all all 0/0 trust"},
            "comment holds a line break",
        ),
        ({**SSL, "method": "scram-sha-256", "options": "x\r"}, "options holds a line break"),
        ({**SSL, "method": "scram-sha-256", "user": "a, postgres"}, "user holds whitespace"),
        ({**SSL, "method": "scram-sha-256", "options": "x # y"}, 'options holds a "#"'),
        ({**SSL, "method": "md5"}, "hostssl lines must use scram-sha-256 or cert"),
        ({**SSL, "method": "trust"}, "hostssl lines must use scram-sha-256 or cert"),
        ({**SSL, "type": "host", "method": "scram-sha-256"}, "local lines must use peer"),
        ({**SSL, "address": "", "method": "cert"}, "give an address"),
        (
            {"type": "local", "database": "all", "user": "all", "method": "trust"},
            "local lines must use peer",
        ),
    ],
)
def test_a_bad_entry_is_named_with_the_reason(entry: dict[str, Any], expected: str) -> None:
    found = refusals([*GOOD_HBA, entry], GOOD_IDENT)
    assert len(found) == 1, found
    assert found[0].startswith("postgresql_hba_entries[3] ")
    assert expected in found[0]
    assert "Fix that entry in postgresql_hba_entries." in found[0]


def test_a_bad_ident_entry_is_named() -> None:
    found = refusals(GOOD_HBA, [*GOOD_IDENT, {"map": "m", "system_user": "x\ny", "db_user": "a#"}])
    assert len(found) == 1, found
    assert found[0].startswith("postgresql_ident_entries[1] ")
    assert "system_user, db_user holds whitespace" in found[0]


def test_every_bad_entry_is_named_at_once() -> None:
    bad_line = {**SSL, "method": "scram-sha-256", "user": "a b", "comment": "x\ny"}
    found = refusals(
        [bad_line, {**SSL, "method": "md5"}], [{"map": "m x", "system_user": "a", "db_user": "b"}]
    )
    assert [message.split(" ")[0] for message in found] == [
        "postgresql_hba_entries[0]",
        "postgresql_ident_entries[0]",
        "postgresql_hba_entries[1]",
    ]
    assert "comment holds a line break" in found[0] and "user holds whitespace" in found[0]
