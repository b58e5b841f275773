"""Unit tests for the pgbackrest role's filters (roles/pgbackrest/filter_plugins)."""

from __future__ import annotations

import json
import re
from dataclasses import fields
from pathlib import Path

import pytest
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


def _inputs(**changes: object) -> dict[str, object]:
    """The role's defaults for a two-host cluster, seen from the repository host."""
    inputs: dict[str, object] = {
        "repository": True,
        "host": "repo1",
        "db_hosts": ["db1", "db2"],
        "repos": [{"index": 1, "host": "repo1", "path": "/var/lib/pgbackrest"}],
        "log_path": "/var/log/pgbackrest",
        "stanza": "mdus",
        "process_max": 2,
        "compress_type": "zst",
        "compress_level": 3,
        "tls_port": 8432,
        "tls_ca_file": "/pki/ca.crt",
        "tls_cert_file": "/pki/pgbackrest.crt",
        "tls_key_file": "/pki/pgbackrest.key",
        "tls_cn_prefix": "pgbackrest@",
        "cipher_type": "aes-256-cbc",
        "retention_full": 2,
        "retention_diff": 7,
        "repo2_retention_full": 3,
        "start_fast": True,
        "backup_standby": False,
        "archive_async": True,
        "spool_path": "/var/spool/pgbackrest",
        "pg_path": "/var/lib/postgresql/15/main",
        "pg_port": 5432,
        "pg_socket_path": "/var/run/postgresql",
        "db_pg": {},
        "global_options": {},
        "stanza_options": {},
        "command_options": {},
    }
    inputs.update(changes)
    return inputs


COMMON = {
    "log-level-console": "warn",
    "log-level-file": "info",
    "log-path": "/var/log/pgbackrest",
    "process-max": 2,
    "compress-type": "zst",
    "compress-level": 3,
    "tls-server-address": "*",
    "tls-server-port": 8432,
    "tls-server-ca-file": "/pki/ca.crt",
    "tls-server-cert-file": "/pki/pgbackrest.crt",
    "tls-server-key-file": "/pki/pgbackrest.key",
}
TO_PEER = {
    "host-type": "tls",
    "host-port": 8432,
    "host-ca-file": "/pki/ca.crt",
    "host-cert-file": "/pki/pgbackrest.crt",
    "host-key-file": "/pki/pgbackrest.key",
}


def test_config_of_the_repository_host() -> None:
    config = pgbr.pgbackrest_config(_inputs())
    pg = {"path": "/var/lib/postgresql/15/main", "port": 5432, "socket-path": "/var/run/postgresql"}
    assert config == {
        "global": COMMON
        | {
            "repo1-path": "/var/lib/pgbackrest",
            "repo1-cipher-type": "aes-256-cbc",
            "repo1-retention-full": 2,
            "repo1-retention-diff": 7,
            "start-fast": True,
            "backup-standby": False,
            "tls-server-auth": {"pgbackrest@db1": "mdus", "pgbackrest@db2": "mdus"},
        },
        "mdus": pgbr.pgbackrest_indexed([{"host": "db1"}, {"host": "db2"}], "pg", TO_PEER | pg),
    }
    # option order is file order: the common options first, pg1 before pg2
    assert list(config["global"])[:3] == ["log-level-console", "log-level-file", "log-path"]
    assert list(config["mdus"])[:2] == ["pg1-host", "pg1-host-type"]
    assert list(config["mdus"])[8:10] == ["pg1-socket-path", "pg2-host"]
    assert pgbr.pgbackrest_config_errors(config, ALLOWED) == []


def test_config_of_a_database_host() -> None:
    config = pgbr.pgbackrest_config(_inputs(repository=False, host="db1"))
    assert config == {
        "global": COMMON
        | {
            "archive-async": True,
            "spool-path": "/var/spool/pgbackrest",
            "tls-server-auth": {"pgbackrest@repo1": "mdus"},
            "repo1-path": "/var/lib/pgbackrest",
            "repo1-host": "repo1",
        }
        | {f"repo1-{name}": value for name, value in TO_PEER.items()},
        "mdus": {
            "pg1-path": "/var/lib/postgresql/15/main",
            "pg1-port": 5432,
            "pg1-socket-path": "/var/run/postgresql",
        },
    }
    assert "repo1-cipher-type" not in config["global"]  # the passphrase side is the repository's
    assert pgbr.pgbackrest_config_errors(config, ALLOWED) == []


REPO2_HERE = [
    {"index": 1, "host": "repo1", "path": "/var/lib/pgbackrest"},
    {"index": 2, "host": "repo1", "path": "/mnt/dr/pgbackrest"},
]


def test_repo2_on_both_sides() -> None:
    repo = pgbr.pgbackrest_config(_inputs(repos=REPO2_HERE))["global"]
    assert repo["repo2-path"] == "/mnt/dr/pgbackrest"
    assert repo["repo2-cipher-type"] == "aes-256-cbc"
    assert repo["repo2-retention-full"] == 3
    assert list(repo).index("repo2-cipher-type") < list(repo).index("repo1-retention-full")
    db = pgbr.pgbackrest_config(_inputs(repository=False, host="db1", repos=REPO2_HERE))["global"]
    assert db["repo2-path"] == "/mnt/dr/pgbackrest"
    assert db["repo2-host"] == "repo1"
    assert db["repo2-host-port"] == 8432
    assert "repo2-retention-full" not in db
    assert db["tls-server-auth"] == {"pgbackrest@repo1": "mdus"}
    # without repo2 nothing of it appears, not even its retention
    single = pgbr.pgbackrest_config(_inputs())["global"]
    assert not [option for option in single if option.startswith("repo2-")]


REPO2_ELSEWHERE = [
    {"index": 2, "host": "repo2", "path": "/var/lib/pgbackrest", "options": {}},
    {"index": 1, "host": "repo1", "path": "/var/lib/pgbackrest"},
]


def test_repo2_on_a_second_repository_host() -> None:
    first = pgbr.pgbackrest_config(_inputs(repos=REPO2_ELSEWHERE))["global"]
    assert not [option for option in first if option.startswith("repo2-")]
    assert first["repo1-retention-full"] == 2
    second = pgbr.pgbackrest_config(_inputs(host="repo2", repos=REPO2_ELSEWHERE))
    assert not [option for option in second["global"] if option.startswith("repo1-")]
    assert second["global"]["repo2-path"] == "/var/lib/pgbackrest"
    assert second["global"]["repo2-retention-full"] == 3
    assert "repo1-retention-diff" not in second["global"]
    # both repository hosts reach every database host and admit its certificate
    assert second["mdus"]["pg2-host"] == "db2"
    assert second["global"]["tls-server-auth"] == {
        "pgbackrest@db1": "mdus",
        "pgbackrest@db2": "mdus",
    }
    db = pgbr.pgbackrest_config(_inputs(repository=False, host="db1", repos=REPO2_ELSEWHERE))
    assert (db["global"]["repo1-host"], db["global"]["repo2-host"]) == ("repo1", "repo2")
    # the database host admits both repository hosts, each for the stanza only
    assert db["global"]["tls-server-auth"] == {
        "pgbackrest@repo1": "mdus",
        "pgbackrest@repo2": "mdus",
    }
    assert list(db["global"]).index("repo1-path") < list(db["global"]).index("repo2-path")
    assert pgbr.pgbackrest_config_errors(second, ALLOWED) == []
    assert pgbr.pgbackrest_config_errors(db, ALLOWED) == []


def test_repo2_in_an_object_store_is_written_on_its_repository_host_only() -> None:
    s3 = {"type": "s3", "s3-bucket": "mdus-dr", "s3-endpoint": "s3.eu-west-1.amazonaws.com"}
    repos = [REPO2_HERE[0], REPO2_HERE[1] | {"path": "/mdus", "options": s3}]
    repo = pgbr.pgbackrest_config(_inputs(repos=repos))
    assert repo["global"]["repo2-type"] == "s3"
    assert repo["global"]["repo2-s3-bucket"] == "mdus-dr"
    assert repo["global"]["repo2-path"] == "/mdus"
    assert pgbr.pgbackrest_config_errors(repo, ALLOWED) == []
    db = pgbr.pgbackrest_config(_inputs(repository=False, host="db1", repos=repos))["global"]
    assert "repo2-type" not in db and db["repo2-host"] == "repo1"


@pytest.mark.parametrize(
    ("repos", "message"),
    [
        ([], "repos must be a non-empty list"),
        ([{"index": 1, "path": "/x"}], "entries take index, host, path"),
        ([{"index": 1, "host": "a", "path": "/x", "type": "s3"}], "entries take index"),
        (REPO2_HERE[:1] * 2, "indexes must be distinct"),
        ([REPO2_HERE[0] | {"index": 0}], "indexes must be distinct, 1-256"),
    ],
)
def test_bad_repositories_are_refused(repos: list[object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        pgbr.pgbackrest_config(_inputs(repos=repos))


def test_cipher_type_none_is_written_out() -> None:
    config = pgbr.pgbackrest_config(_inputs(cipher_type="none"))
    assert config["global"]["repo1-cipher-type"] == "none"
    assert "repo1-cipher-type=none\n" in pgbr.pgbackrest_ini(config)


def test_tls_server_auth_admits_the_peers_pgbackrest_cns_for_the_stanza_only() -> None:
    repo = pgbr.pgbackrest_config(_inputs(stanza="main"))
    assert repo["global"]["tls-server-auth"] == {"pgbackrest@db1": "main", "pgbackrest@db2": "main"}
    db = pgbr.pgbackrest_config(_inputs(repository=False, host="db1", tls_cn_prefix=""))
    assert db["global"]["tls-server-auth"] == {"repo1": "mdus"}  # CN = host name
    assert "tls-server-auth=repo1=mdus\n" in pgbr.pgbackrest_ini(db)


def test_each_database_host_keeps_its_own_location() -> None:
    """A database host whose inventory sets its own data directory and port is reached
    there by the repository host; the others keep the role's values."""
    config = pgbr.pgbackrest_config(
        _inputs(db_pg={"db2": {"path": "/srv/pg", "port": "5433"}, "db1": {}})
    )
    stanza = config["mdus"]
    assert (stanza["pg1-path"], stanza["pg1-port"]) == ("/var/lib/postgresql/15/main", 5432)
    assert (stanza["pg2-path"], stanza["pg2-port"]) == ("/srv/pg", 5433)
    assert stanza["pg2-socket-path"] == "/var/run/postgresql"
    with pytest.raises(ValueError, match=r"db_pg\[db1\] has unknown keys \['pgdata'\]"):
        pgbr.pgbackrest_config(_inputs(db_pg={"db1": {"pgdata": "/x"}}))


def test_option_overrides_win_in_place_and_new_options_come_last() -> None:
    config = pgbr.pgbackrest_config(
        _inputs(
            global_options={
                "log-level-file": "detail",
                "tls-server-auth": {"x": "y"},
                "delta": True,
            },
            stanza_options={"pg2-port": 5433, "recovery-option": {"a": "b"}},
        )
    )
    options = list(config["global"])
    assert config["global"]["log-level-file"] == "detail"
    assert options.index("log-level-file") == 1
    assert config["global"]["tls-server-auth"] == {"x": "y"}  # replaced, not merged
    assert options[-1] == "delta"
    assert config["mdus"]["pg2-port"] == 5433
    assert list(config["mdus"])[-1] == "recovery-option"


def test_command_options_become_global_command_sections() -> None:
    commands = {"archive-push": {"process-max": 4}, "backup": {"start-fast": False}}
    config = pgbr.pgbackrest_config(_inputs(command_options=commands))
    assert list(config) == ["global", "mdus", "global:archive-push", "global:backup"]
    assert config["global:archive-push"] == {"process-max": 4}
    assert pgbr.pgbackrest_command_sections(commands) == {
        "global:archive-push": {"process-max": 4},
        "global:backup": {"start-fast": False},
    }
    assert pgbr.pgbackrest_command_sections({}) == {}


def test_inputs_given_as_strings_are_turned_into_their_types() -> None:
    config = pgbr.pgbackrest_config(
        _inputs(repository="True", tls_port="9432", start_fast="no", backup_standby="yes")
    )
    assert config["global"]["tls-server-port"] == 9432
    assert config["mdus"]["pg1-host-port"] == 9432
    assert config["global"]["start-fast"] is False
    assert config["global"]["backup-standby"] is True


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"tls_port": "84x2"}, "tls_port must be an integer, got '84x2'"),
        ({"pg_port": float("inf")}, "pg_port must be an integer, got inf"),
        ({"process_max": True}, "process_max must be an integer, got True"),
        ({"start_fast": "maybe"}, "start_fast must be a boolean, got 'maybe'"),
        ({"archive_async": None}, "archive_async must be a boolean, got None"),
        ({"global_options": []}, "global_options must be a mapping, got list"),
        ({"db_hosts": "db1"}, "db_hosts must be a list, got str"),
        ({"stanz": "x"}, "unknown inputs ['stanz']"),
    ],
)
def test_bad_inputs_are_refused_by_name(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        pgbr.pgbackrest_config(_inputs(**changes))


def test_missing_input_is_named() -> None:
    inputs = _inputs()
    del inputs["pg_port"]
    with pytest.raises(ValueError, match=re.escape("missing inputs ['pg_port']")):
        pgbr.pgbackrest_config(inputs)


def test_role_passes_exactly_the_filters_inputs() -> None:
    expression = yaml.safe_load((ROLE / "vars/main.yml").read_text())["__pgbackrest_config"]
    passed = re.findall(r"'([a-z0-9_]+)':", expression)
    assert sorted(passed) == sorted(field.name for field in fields(pgbr.ConfigInputs))
    assert expression.rstrip().endswith("| pgbackrest_config }}")


INFO = (Path(__file__).parent / "data/pgbackrest_info.json").read_text()


def test_info_status_of_a_healthy_stanza() -> None:
    assert pgbr.pgbackrest_info_status(INFO, "", 0) == {"code": 0, "message": "ok ok", "backups": 3}


def test_info_status_carries_every_repositorys_message() -> None:
    answer = [
        {
            "name": "mdus",
            "status": {"code": 99, "message": "other"},
            "repo": [
                {"key": 1, "status": {"code": 0, "message": "ok"}},
                {"key": 2, "status": {"code": 99, "message": "[FormatError] cannot decrypt"}},
            ],
        }
    ]
    status = pgbr.pgbackrest_info_status("\n " + json.dumps(answer), "", 0)
    assert status == {"code": 99, "message": "other ok [FormatError] cannot decrypt", "backups": 0}


def test_info_status_of_a_missing_stanza() -> None:
    answer = [{"name": "mdus", "status": {"code": 1, "message": "missing stanza path"}}]
    assert pgbr.pgbackrest_info_status(json.dumps(answer)) == {
        "code": 1,
        "message": "missing stanza path",
        "backups": 0,
    }


@pytest.mark.parametrize(
    ("stdout", "stderr", "rc", "message"),
    [
        (INFO, "ERROR: [058]: TLS error\n", 58, "ERROR: [058]: TLS error"),  # rc wins over stdout
        ("", "ERROR: [037]: no stanza\n", 0, "ERROR: [037]: no stanza"),
        ("not json", "", 0, "no answer"),
        ("[{broken", "", 0, "no answer"),
        ("[]", "", 0, "no answer"),
    ],
)
def test_info_status_without_a_json_answer(stdout: str, stderr: str, rc: int, message: str) -> None:
    assert pgbr.pgbackrest_info_status(stdout, stderr, rc) == {
        "code": -1,
        "message": message,
        "backups": 0,
    }
