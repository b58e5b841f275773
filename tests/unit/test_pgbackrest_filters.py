"""Unit tests for the pgbackrest role's filters (roles/pgbackrest/filter_plugins)."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.modload import load_module

ROLE = Path(__file__).parents[2] / "roles/pgbackrest"


pgbr = load_module("pgbackrest_filters", ROLE / "filter_plugins/pgbackrest.py")
ALLOWED = yaml.safe_load((ROLE / "vars/main.yml").read_text())["__pgbackrest_allowed_options"]


def test_ini_renders_sections_booleans_lists_and_hashes() -> None:
    text = pgbr.pgbackrest_ini(
        {
            "global": {
                "repo1-path": "/var/lib/pgbackrest",
                "start-fast": True,
                "archive-async": False,
                "process-max": 2,
                "tls-server-auth": {"db1": "mdus", "db2": "mdus"},
                "exclude": ["a", "b"],
                "skipped": None,
            },
            "global:archive-push": {"process-max": 4},
            "empty": {},
            "mdus": {"pg1-path": "/data"},
        }
    )
    assert text == (
        "[global]\nrepo1-path=/var/lib/pgbackrest\nstart-fast=y\narchive-async=n\n"
        "process-max=2\ntls-server-auth=db1=mdus\ntls-server-auth=db2=mdus\n"
        "exclude=a\nexclude=b\n\n[global:archive-push]\nprocess-max=4\n\n"
        "[mdus]\npg1-path=/data\n"
    )


def test_valid_config_has_no_errors() -> None:
    config = {
        "global": {
            "repo1-path": "/r",
            "repo2-path": "/r2",
            "repo1-retention-full": 2,
            "repo1-cipher-type": "aes-256-cbc",
            "start-fast": True,
            "buffer-size": "1MiB",
            "archive-timeout": 30,
            "tls-server-auth": {"pg1": "mdus"},
            "log-level-file": "off",
        },
        "global:archive-push": {"process-max": "4"},
        "mdus": {"pg1-path": "/d", "pg12-host": "h", "pg12-host-type": "tls"},
    }
    assert pgbr.pgbackrest_config_errors(config, ALLOWED, "v") == []


def test_unknown_option_is_refused_naming_variable_section_and_option() -> None:
    errors = pgbr.pgbackrest_config_errors(
        {"global": {"repo1-retention-ful": 2}}, ALLOWED, "pgbackrest_global_options"
    )
    assert errors == [
        "pgbackrest_global_options['global']['repo1-retention-ful']: unknown pgBackRest option"
        " (typo? see `pgbackrest help`)"
    ]


def test_wrong_types_and_choices_are_refused() -> None:
    errors = pgbr.pgbackrest_config_errors(
        {
            "global": {
                "start-fast": "yes",
                "process-max": "many",
                "compress-type": "xz",
                "buffer-size": "big",
                "repo1-path": "",
                "tls-server-auth": ["x"],
                "exclude": "one",
                "archive-timeout": None,
            }
        },
        ALLOWED,
        "pgbackrest_global_options",
    )
    joined = "\n".join(errors)
    assert len(errors) == 8, joined
    assert "['start-fast']: 'yes' is not a boolean" in joined
    assert "['process-max']: 'many' is not an integer" in joined
    assert "['compress-type']: 'xz' is not one of none, bz2, gz, lz4, zst" in joined
    assert "['buffer-size']: 'big' is not a size" in joined
    assert "['repo1-path']: '' is not a non-empty one-line string" in joined
    assert "['tls-server-auth']: ['x'] is not a mapping" in joined
    assert "['exclude']: 'one' is not a list of strings" in joined
    assert "['archive-timeout']: no value" in joined


def test_bad_structure_is_refused() -> None:
    assert pgbr.pgbackrest_config_errors(["global"], ALLOWED, "v") == [
        "v must be a mapping of section name to options, got list"
    ]
    errors = pgbr.pgbackrest_config_errors({"bad section!": {}, "ok": "x"}, ALLOWED, "v")
    assert errors == [
        "v: section 'bad section!' is not a stanza or global[:command]",
        "v['ok'] must be a mapping of option to value",
    ]


def test_multiline_value_is_refused() -> None:
    # a newline would inject options into pgbackrest.conf
    errors = pgbr.pgbackrest_config_errors(
        {"global": {"repo1-path": "/r\nrepo1-cipher-type=none"}}, ALLOWED, "v"
    )
    assert len(errors) == 1
    assert "not a non-empty one-line string" in errors[0]


def test_indexed_numbers_entries_with_common_options() -> None:
    assert pgbr.pgbackrest_indexed(
        [{"host": "a"}, {"host": "b", "port": 1}], "pg", {"port": 5}
    ) == {
        "pg1-host": "a",
        "pg1-port": 5,
        "pg2-host": "b",
        "pg2-port": 1,
    }
    assert pgbr.pgbackrest_indexed([], "repo") == {}


def test_allowed_table_types_are_known() -> None:
    for name, spec in ALLOWED.items():
        kind = spec["type"] if isinstance(spec, dict) else spec
        assert kind in pgbr._CHECKS, name
