"""Input that deploys but silently fails is refused before any host changes.

- A secret still holding the example inventory's CHANGE-ME marker (every role with a
  secret: postgresql in test_postgresql_refusals.py, pgbackrest, mdus_schema,
  monitoring_server here), named by its path, its value never printed.
- PgBouncer without the pg_hba cert line and the ident map line its lookup role needs on
  every database host it may point at (pgbouncer role).
- Alertmanager whose top-level route drops alerts, or email receivers without SMTP
  settings (monitoring_server role).

One ansible-playbook run (repo ansible.cfg, local connection, as test_refusal_output.py)
holds every case: one inventory host per case, with its own host_vars, runs the validate
entry point of its role. The filters behind the checks are unit-tested directly too.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.modload import load_module
from tests.unit.test_refusal_output import REPO, run_play

placeholders = load_module("mdus_placeholders", REPO / "plugins/filter/placeholders.py")
pgbouncer_auth = load_module(
    "pgbouncer_auth_filters", REPO / "roles/pgbouncer/filter_plugins/pgbouncer_auth.py"
)

PLAY = """
- name: One case per host, each through its role's input checks
  hosts: all
  gather_facts: false
  tasks:
    - name: PgBouncer input
      ansible.builtin.include_role:
        name: pgbouncer
        tasks_from: validate
      when: case_role == 'pgbouncer'
    - name: Prometheus and Alertmanager input
      ansible.builtin.include_role:
        name: monitoring_server
        tasks_from: validate
      when: case_role == 'monitoring_server'
    - name: MDUS schema input
      ansible.builtin.include_role:
        name: mdus_schema
        tasks_from: inputs
      when: case_role == 'mdus_schema'
    - name: PgBackRest input
      ansible.builtin.include_role:
        name: pgbackrest
        tasks_from: validate
      when: case_role == 'pgbackrest'
"""

# A real-looking secret: must pass, and must never reach the output.
SECRET = "s3cr3t-" + "x" * 24
PLACEHOLDER = "CHANGE-ME-example-value"

# PgBouncer cases: each host is its own primary (group <host>_primary), as on a one-host
# cluster; the pair case is a primary and a replica whose PgBouncers both log in to both.
APP_LINE = {
    "type": "hostssl",
    "database": "mdus_db",
    "user": "mdus_app",
    "address": "10.0.0.0/8",
    "method": "scram-sha-256",
}
CERT_LINE = {
    "type": "hostssl",
    "database": "all",
    "user": "pgbouncer_auth",
    "address": "10.0.0.0/8",
    "method": "cert",
    "options": "map=pgbouncer",
}


def _ident(*hosts: str) -> list[dict[str, str]]:
    return [{"map": "pgbouncer", "system_user": h, "db_user": "pgbouncer_auth"} for h in hosts]


def _bouncer(name: str, hba: list[dict[str, Any]], ident: list[dict[str, str]]) -> dict:
    return {
        "case_role": "pgbouncer",
        "pgbouncer_primary_group": f"{name}_primary",
        "pgbouncer_replica_group": f"{name}_replicas",
        "postgresql_hba_entries": hba,
        "postgresql_ident_entries": ident,
    }


WEBHOOK = {"name": "ops", "webhook_configs": [{"url": "https://alerts.example.org/hook"}]}


def _monitoring(**variables: Any) -> dict[str, Any]:
    return {"case_role": "monitoring_server", **variables}


def _repo2(name: str, **variables: Any) -> dict[str, Any]:
    """A repository host of its own group, with a good passphrase and the given repo2 input."""
    return {
        "case_role": "pgbackrest",
        "pgbackrest_repo_group": f"{name}_repo",
        "pgbackrest_db_group": f"{name}_db",
        "pgbackrest_cipher_pass": SECRET,
        "pgbackrest_restore_check_enabled": False,
        **variables,
    }


CASES: dict[str, dict[str, Any]] = {
    # PgBouncer's lookup role on the database hosts.
    "bnc_good": _bouncer("bnc_good", [CERT_LINE, APP_LINE], _ident("pgbouncer@bnc_good")),
    "bnc_nohba": _bouncer("bnc_nohba", [APP_LINE], _ident("pgbouncer@bnc_nohba")),
    "bnc_order": _bouncer(
        "bnc_order",
        [{**APP_LINE, "database": "all", "user": "all"}, CERT_LINE],
        _ident("pgbouncer@bnc_order"),
    ),
    "bnc_nomap": _bouncer(
        "bnc_nomap", [{**CERT_LINE, "options": "clientcert=verify-full"}, APP_LINE], []
    ),
    "bnc_noident": _bouncer("bnc_noident", [CERT_LINE, APP_LINE], _ident("pgbouncer@someone_else")),
    "pair1": {**_bouncer("pair", [CERT_LINE, APP_LINE], _ident("pgbouncer@pair1"))},
    "pair2": {**_bouncer("pair", [CERT_LINE, APP_LINE], _ident("pgbouncer@pair1"))},
    # Alertmanager delivery.
    "mon_good": _monitoring(
        monitoring_server_alertmanager_receivers=[WEBHOOK],
        monitoring_server_alertmanager_route_receiver="ops",
        monitoring_server_scrape_basic_auth_password=SECRET,
    ),
    "mon_default": _monitoring(),
    "mon_missing": _monitoring(
        monitoring_server_alertmanager_receivers=[WEBHOOK],
        monitoring_server_alertmanager_route_receiver="pager",
    ),
    "mon_null_route": _monitoring(
        monitoring_server_alertmanager_receivers=[{"name": "blackhole"}, WEBHOOK],
        monitoring_server_alertmanager_route_receiver="blackhole",
    ),
    "mon_email_nosmtp": _monitoring(
        monitoring_server_alertmanager_receivers=[
            {"name": "dba", "email_configs": [{"to": "dba@example.org"}]}
        ],
        monitoring_server_alertmanager_route_receiver="dba",
    ),
    # Placeholders, named by path.
    "mon_smtp": _monitoring(
        monitoring_server_alertmanager_receivers=[
            {"name": "dba", "email_configs": [{"to": "dba@example.org"}]}
        ],
        monitoring_server_alertmanager_route_receiver="dba",
        monitoring_server_alertmanager_smtp={
            "smarthost": "mail.example.org:587",
            "from": "alerts@example.org",
            "auth_password": PLACEHOLDER,
        },
    ),
    "mon_hook": _monitoring(
        monitoring_server_alertmanager_receivers=[
            {
                "name": "ops",
                "webhook_configs": [
                    {
                        "url": "https://alerts.example.org/CHANGE-ME",
                        "http_config": {"basic_auth": {"password": PLACEHOLDER}},
                    }
                ],
            }
        ],
        monitoring_server_alertmanager_route_receiver="ops",
    ),
    "mon_scrape": _monitoring(
        monitoring_server_alertmanager_receivers=[WEBHOOK],
        monitoring_server_alertmanager_route_receiver="ops",
        monitoring_server_scrape_basic_auth_password=PLACEHOLDER,
    ),
    "schema": {
        "case_role": "mdus_schema",
        "mdus_schema_passwords": {"mdus_app": PLACEHOLDER, "mdus_readonly": SECRET},
    },
    # The role's checks are one task: three refused inputs are named in one run.
    "schema_many": {
        "case_role": "mdus_schema",
        "mdus_schema_passwords": {"mdus_app": " ", "nobody": SECRET},
        "mdus_schema_database": "MDUS-db",
    },
    "pgbr": {
        "case_role": "pgbackrest",
        "pgbackrest_cipher_pass": PLACEHOLDER,
        "pgbackrest_global_options": {"repo1-s3-key-secret": PLACEHOLDER},
    },
    # repo2 (each case its own repository group, so the others' hosts do not count)
    "pgbr_elsewhere": _repo2("pgbr_elsewhere", pgbackrest_repo2_host="nosuchhost"),
    "pgbr_samepath": _repo2("pgbr_samepath", pgbackrest_repo2_path="/var/lib/pgbackrest"),
    "pgbr_s3": _repo2(
        "pgbr_s3", pgbackrest_repo2_path="/mdus", pgbackrest_repo2_s3={"bucket": "mdus-dr"}
    ),
    "pgbr_s3_keys": _repo2(
        "pgbr_s3_keys",
        pgbackrest_repo2_path="/mdus",
        pgbackrest_repo2_s3={"bucket": "b", "endpoint": "e", "region": "r", "key": SECRET},
    ),
    "pgbr_s3_good": _repo2(
        "pgbr_s3_good",
        pgbackrest_repo2_path="/mdus",
        pgbackrest_repo2_s3={"bucket": "b", "endpoint": "s3.example.org", "region": "eu"},
        pgbackrest_repo2_s3_key="AKIA" + "X" * 16,
        pgbackrest_repo2_s3_key_secret=SECRET,
    ),
    # The role's checks are one task: two refused inputs are named in one run.
    "pgbr_many": _repo2(
        "pgbr_many", pgbackrest_stanza="mdus main", pgbackrest_schedule={"weekly": "Sun"}
    ),
}

INVENTORY = {
    "all": {
        "hosts": {name: {"ansible_connection": "local"} for name in CASES},
        "children": {
            **{
                f"{name}_primary": {"hosts": {name: {}}}
                for name, case in CASES.items()
                if case["case_role"] == "pgbouncer" and not name.startswith("pair")
            },
            "pair_primary": {"hosts": {"pair1": {}}},
            "pair_replicas": {"hosts": {"pair2": {}}},
            "pgbackrest_repo": {"hosts": {"pgbr": {}}},
            **{f"{name}_repo": {"hosts": {name: {}}} for name in CASES if name.startswith("pgbr_")},
        },
    }
}

# Case -> what its refusal must say (None: it passes).
EXPECTED: dict[str, list[str] | None] = {
    "bnc_good": None,
    "pair1": None,
    "bnc_nohba": [
        "postgresql_hba_entries of bnc_nohba has no hostssl line for pgbouncer_auth",
        "method: cert, options: map=pgbouncer",
    ],
    "bnc_order": [
        "the first postgresql_hba_entries line of bnc_order for pgbouncer_auth",
        "uses scram-sha-256",
        "put {type: hostssl",
    ],
    "bnc_nomap": ["cert line of bnc_nomap", "has no ident map", "options: map=pgbouncer"],
    "bnc_noident": [
        "postgresql_ident_entries of bnc_noident does not map",
        "(CN pgbouncer@bnc_noident)",
        "{map: pgbouncer, system_user: pgbouncer@bnc_noident, db_user: pgbouncer_auth}",
    ],
    "pair2": [
        "PgBouncer could not log in to pair1 as pgbouncer_auth",
        "postgresql_ident_entries of pair1 does not map",
        "certificate (CN pgbouncer@pair2)",
    ],
    "mon_good": None,
    "mon_default": [
        "monitoring_server_alertmanager_route_receiver is 'default'",
        "would drop every alert",
        "monitoring_server_alertmanager_receivers",
    ],
    "mon_missing": [
        "monitoring_server_alertmanager_route_receiver is 'pager'",
        "not in monitoring_server_alertmanager_receivers (names: ops)",
    ],
    "mon_null_route": ["route_receiver is 'blackhole'", "would drop every alert"],
    "mon_email_nosmtp": [
        "email_configs without a smarthost",
        "monitoring_server_alertmanager_smtp",
    ],
    "mon_smtp": [
        "Refusing the example placeholder",
        "monitoring_server_alertmanager_smtp.auth_password",
    ],
    "mon_hook": [
        "monitoring_server_alertmanager_receivers[0].webhook_configs[0].url",
        "monitoring_server_alertmanager_receivers[0].webhook_configs[0].http_config.basic_auth.password",
    ],
    "mon_scrape": [
        "Refusing the example placeholder",
        "monitoring_server_scrape_basic_auth_password",
    ],
    "schema": ["Refusing the example placeholder", "mdus_schema_passwords.mdus_app"],
    "schema_many": [
        "the password of mdus_app is empty or only",
        "mdus_schema_database (MDUS-db) and mdus_schema_pgaudit_role",
        "mdus_schema_passwords may only name roles of mdus_schema_roles",
    ],
    "pgbr": [
        "Refusing the example placeholder",
        "pgbackrest_cipher_pass",
        "pgbackrest_global_options.repo1-s3-key-secret",
    ],
    "pgbr_elsewhere": ["pgbackrest_repo2_host is nosuchhost", "not in inventory group"],
    "pgbr_samepath": ["the same path as repo1", "/var/lib/pgbackrest-repo2"],
    "pgbr_s3": ["needs bucket, endpoint and", "region", "pgbackrest_repo2_s3_key_secret"],
    "pgbr_s3_keys": ["the keys never go into pgbackrest_repo2_s3 itself"],
    "pgbr_s3_good": None,
    "pgbr_many": [
        "mdus main",
        "is not a valid stanza name (letters, digits",
        "pgbackrest_schedule must map backup types (full, diff, incr)",
    ],
}

FAILURE = re.compile(r"^(?:fatal|failed): \[([^\]]+)\]", re.M)


def failures_by_host(output: str) -> dict[str, str]:
    """Each host's failure text, from its fatal/failed line to the next task, host or recap."""
    blocks: dict[str, str] = {}
    matches = list(FAILURE.finditer(output))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(output)
        text = output[match.start() : end]
        text = re.split(r"\n(?:TASK \[|PLAY RECAP)", text)[0]
        # YAML output folds long messages: read them as one line.
        blocks[match.group(1)] = blocks.get(match.group(1), "") + " ".join(text.split())
    return blocks


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    tmp_path = tmp_path_factory.mktemp("refusals")
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(INVENTORY))
    host_vars = tmp_path / "host_vars"
    host_vars.mkdir()
    for name, variables in CASES.items():
        (host_vars / f"{name}.yml").write_text(yaml.safe_dump(variables))
    playbook = tmp_path / "play.yml"
    playbook.write_text(PLAY)
    result, output = run_play(playbook, hosts=str(tmp_path / "inventory.yml"))
    assert result.returncode == 2, output
    return output, failures_by_host(output)


def test_every_case_is_expected() -> None:
    assert set(EXPECTED) == set(CASES)


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_case(run: tuple[str, dict[str, str]], case: str) -> None:
    output, failures = run
    expected = EXPECTED[case]
    if expected is None:
        assert case not in failures, failures.get(case)
        assert re.search(
            rf"^{case}\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", output, re.M
        )
        return
    assert case in failures, output
    for words in expected:
        assert words in failures[case], failures[case]


def test_no_secret_value_reaches_the_output(run: tuple[str, dict[str, str]]) -> None:
    output, _ = run
    assert PLACEHOLDER not in output
    assert SECRET not in output


# The filters behind the checks.


def test_placeholders_named_by_path_in_order() -> None:
    found = placeholders.mdus_placeholders(
        {
            "a_password": "CHANGE-ME-1",
            "a_users": [{"name": "x", "password": SECRET}, {"name": "y", "password": "CHANGE-ME"}],
            "a_map": {"k": {"deep": ["ok", "token=CHANGE-ME"]}, "n": 5, "none": None},
            "a_clean": SECRET,
        }
    )
    assert found == ["a_password", "a_users[1].password", "a_map.k.deep[1]"]


def test_placeholders_none_and_other_marker() -> None:
    assert placeholders.mdus_placeholders({"a": "", "b": [], "c": {}, "d": True}) == []
    assert placeholders.mdus_placeholders({"a": "change-me"}) == []  # the marker is exact
    assert placeholders.mdus_placeholders({"a": "TODO-x"}, "TODO") == ["a"]


def _auth_errors(
    hba: list[dict[str, Any]],
    ident: list[dict[str, str]],
    target: str,
    bouncer: str,
    dbs: list[str],
) -> list[str]:
    return pgbouncer_auth.pgbouncer_auth_errors(
        hba, ident, target=target, pgbouncer_cn=bouncer, auth_user="pgbouncer_auth", dbnames=dbs
    )


def test_pgbouncer_auth_regex_ident_and_several_databases() -> None:
    hba = [
        {**CERT_LINE, "database": "mdus_db,mdus_drill", "options": "clientcert=verify-full map=pgb"}
    ]
    ident = [
        {"map": "pgb", "system_user": r"/^db[0-9]+\.example\.org$", "db_user": "pgbouncer_auth"}
    ]
    dbs = ["mdus_db", "mdus_drill"]
    assert _auth_errors(hba, ident, "db1.example.org", "db2.example.org", dbs) == []
    errors = _auth_errors(hba, ident, "db1.example.org", "pgb.other.org", ["mdus_db", "other"])
    assert len(errors) == 2, errors
    assert "no hostssl line for pgbouncer_auth on database other" in errors[0]
    assert "CN pgb.other.org" in errors[1]


def test_pgbouncer_auth_lines_for_other_users_or_databases_are_skipped() -> None:
    hba = [
        {**APP_LINE, "database": "all", "user": "mdus_app,mdus_readonly"},
        {**APP_LINE, "database": "postgres", "user": "all"},
        {"type": "local", "database": "all", "user": "all", "method": "peer"},
        CERT_LINE,
    ]
    assert _auth_errors(hba, _ident("h"), "h", "h", ["mdus_db"]) == []
