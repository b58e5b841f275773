"""PgBouncer's reach and server connections: hba derived from PostgreSQL's, pools that fit.

Filters of roles/pgbouncer/filter_plugins/pgbouncer.py, and the role's validate entry
point run by ansible-playbook against an inventory of three database hosts (connection
local, nothing is touched).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.modload import load_module

REPO = Path(__file__).parents[2]
ROLE = REPO / "roles/pgbouncer"
flt = load_module("pgbouncer_filters", ROLE / "filter_plugins/pgbouncer.py")
DEFAULTS = yaml.safe_load((ROLE / "defaults/main.yml").read_text())
ALIASES = DEFAULTS["pgbouncer_databases"]

# Ansible's facts of a container's interfaces (trimmed).
INTERFACES = [
    {
        "device": "lo",
        "ipv4": {"address": "127.0.0.1", "netmask": "255.0.0.0", "prefix": "8"},
        "ipv6": [{"address": "::1", "prefix": "128", "scope": "host"}],
    },
    {
        "device": "eth0",
        "ipv4": {"address": "172.18.0.3", "netmask": "255.255.0.0"},
        "ipv6": [{"address": "fe80::42:acff:fe12:3", "prefix": "64", "scope": "link"}],
    },
]
LAB_HBA = [
    {"type": "local", "database": "all", "user": "all", "method": "peer"},
    {
        "type": "hostssl",
        "database": "all",
        "user": "pgbouncer_auth",
        "address": "samenet",
        "method": "cert",
        "options": "map=pgbouncer",
    },
    {
        "type": "hostssl",
        "database": "all",
        "user": "all",
        "address": "127.0.0.1/32",
        "method": "scram-sha-256",
    },
    {
        "type": "hostssl",
        "database": "mdus_db",
        "user": "mdus_app,mdus_analyst",
        "address": "10.20.0.0/24",
        "method": "scram-sha-256",
    },
    {
        "type": "hostssl",
        "database": "reports",
        "user": "all",
        "address": "10.30.0.0/24",
        "method": "scram-sha-256",
    },
    {
        "type": "hostssl",
        "database": "all",
        "user": "all",
        "address": "samenet",
        "method": "scram-sha-256",
    },
]


def test_hba_carries_only_what_postgresql_admits_by_scram() -> None:
    lines = flt.pgbouncer_hba(LAB_HBA, ALIASES, INTERFACES)
    served = "mdus_db,mdus_db_ro,mdus_db_session"
    assert lines == [
        {"database": served, "user": "all", "address": "127.0.0.1/32"},
        {"database": served, "user": "mdus_app,mdus_analyst", "address": "10.20.0.0/24"},
        {"database": served, "user": "all", "address": "127.0.0.0/8"},
        {"database": served, "user": "all", "address": "172.18.0.0/16"},
        {"database": served, "user": "all", "address": "::1/128"},
    ]
    assert not any(line["address"] in {"0.0.0.0/0", "::/0"} for line in lines)


def test_samehost_is_the_hosts_own_addresses() -> None:
    entry = {
        "type": "hostssl",
        "database": "all",
        "user": "all",
        "address": "samehost",
        "method": "scram-sha-256",
    }
    addresses = {line["address"] for line in flt.pgbouncer_hba([entry], ALIASES, INTERFACES)}
    assert addresses == {"127.0.0.1/32", "172.18.0.3/32", "::1/128"}


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [("address", "app.example.org", "not host names"), ("user", "+clinicians", "group and file")],
)
def test_hba_entries_pgbouncer_cannot_express_are_refused(
    field: str, value: str, reason: str
) -> None:
    entry = {
        "type": "hostssl",
        "database": "all",
        "user": "all",
        "address": "10.0.0.0/8",
        "method": "scram-sha-256",
        field: value,
    }
    with pytest.raises(Exception, match=reason):  # AnsibleFilterError under Ansible
        flt.pgbouncer_hba([entry], ALIASES, INTERFACES)


def test_hba_problems_name_the_line() -> None:
    problems = flt.pgbouncer_hba_problems(
        [
            {"database": "mdus_db", "user": "all", "address": "10.0.0.0/8"},
            {"database": "nope", "user": "all", "address": "10.0.0.0/8"},
            {"database": "mdus_db", "user": "all", "address": "ten.zero"},
            {"database": "mdus_db", "user": "all\nhost", "address": "10.0.0.0/8"},
        ],
        ALIASES,
    )
    assert len(problems) == 3, problems
    assert "nope is not an alias" in problems[0]
    assert "not a CIDR network" in problems[1]
    assert "without spaces" in problems[2]


def _fleet(hosts: list[str], cap: int = 25) -> list[dict[str, Any]]:
    return [{"host": host, "databases": ALIASES, "max_db_connections": cap} for host in hosts]


def test_every_host_counts_every_primary_alias_and_its_replica_aliases() -> None:
    demand = flt.pgbouncer_server_demand(_fleet(["pg1", "pg2", "pg3"]), ["pg1"], ["pg2", "pg3"])
    # primary aliases: 3 PgBouncers x (25 + 15) everywhere; replica aliases: pg1's and
    # pg2's on pg2 (the first replica), pg3's on pg3
    assert {host: wanted["need"] for host, wanted in demand.items()} == {
        "pg1": 120,
        "pg2": 170,
        "pg3": 145,
    }
    limits = {host: {"max_connections": "200"} for host in demand}
    assert flt.pgbouncer_pool_shortfall(demand, limits, 10) == []
    short = flt.pgbouncer_pool_shortfall(demand, limits, 30)
    assert len(short) == 1 and short[0].startswith("pg2: max_connections 200 < 203"), short


def test_alone_a_primary_takes_its_replica_aliases_too() -> None:
    demand = flt.pgbouncer_server_demand(_fleet(["pg1"]), ["pg1"], [])
    assert demand["pg1"]["need"] == 25 + 25 + 15


SERVERS = {"pg1": "postgres_primary", "pg2": "postgres_replica", "pg3": "postgres_replica"}


def _run_validate(
    tmp_path: Path, host_vars: dict[str, Any], *, postgresql: bool = False, **play_vars: Any
) -> str:
    """The pgbouncer role's validate entry point on three local 'database hosts'
    (`postgresql`: the postgresql role's validate first, as site.yml's preflight runs it,
    which plans max_connections from the host size)."""
    groups: dict[str, Any] = {"postgres_primary": {"hosts": {}}, "postgres_replica": {"hosts": {}}}
    for host, group in SERVERS.items():
        groups[group]["hosts"][host] = {}
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "postgresql_hba_entries": [
                    *LAB_HBA[1:2],
                    {
                        "type": "hostssl",
                        "database": "all",
                        "user": "all",
                        "address": "samenet",
                        "method": "scram-sha-256",
                    },
                ],
                "postgresql_ident_entries": [
                    {
                        "map": "pgbouncer",
                        "system_user": f"pgbouncer@{host}",
                        "db_user": "pgbouncer_auth",
                    }
                    for host in SERVERS
                ],
                **host_vars,
            },
            "children": {"postgres": {"children": groups}},
        }
    }
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    play = [
        {
            "name": "PgBouncer input",
            "hosts": "postgres",
            "gather_facts": True,
            "gather_subset": ["min", "network", "hardware"],
            "vars": play_vars,
            "tasks": [
                *(
                    [
                        {
                            "name": "PostgreSQL input",
                            "ansible.builtin.include_role": {
                                "name": "postgresql",
                                "tasks_from": "validate",
                            },
                        }
                    ]
                    if postgresql
                    else []
                ),
                {
                    "name": "Validate",
                    "ansible.builtin.include_role": {"name": "pgbouncer", "tasks_from": "validate"},
                },
            ],
        }
    ]
    (tmp_path / "play.yml").write_text(yaml.safe_dump(play))
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_ROLES_PATH=str(REPO / "roles"),
        ANSIBLE_STRATEGY="linear",
    )
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(tmp_path / "inventory.yml"),
            str(tmp_path / "play.yml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    return f"rc={result.returncode}\n{result.stdout}{result.stderr}"


def test_defaults_fit_three_hosts_of_max_connections_200(tmp_path: Path) -> None:
    output = _run_validate(tmp_path, {"postgresql_settings": {"max_connections": 200}})
    assert output.startswith("rc=0"), output


def test_pools_beyond_max_connections_are_refused_with_each_term(tmp_path: Path) -> None:
    output = _run_validate(tmp_path, {"postgresql_settings": {"max_connections": 120}})
    assert output.startswith("rc=2"), output
    assert "Server connections do not fit: pg1: max_connections 120 < 133" in output, output
    assert "pg2:mdus_db_ro=25" in output and "pgbouncer_other_connections 10" in output
    assert "raise max_connections in postgresql_settings" in output


def test_unknown_max_connections_is_said_not_skipped_silently(tmp_path: Path) -> None:
    output = _run_validate(tmp_path, {})
    assert output.startswith("rc=0"), output
    assert "WARNING: max_connections of pg1, pg2, pg3 is unknown in this run" in output, output


def test_max_connections_planned_by_the_postgresql_role_is_used(tmp_path: Path) -> None:
    """No max_connections in the inventory: the postgresql role's validate plans it from
    the host size and the workload profile (dw: 40), and the pools must fit that."""
    sized = {
        "postgresql_tune_memory_mb": 4096,
        "postgresql_tune_cpus": 2,
        "postgresql_preflight": True,
        "postgresql_workload_profile": "dw",
        "postgresql_replication_password": "a-throw-away-replication-password",
    }
    output = _run_validate(tmp_path, sized, postgresql=True)
    assert output.startswith("rc=2"), output
    assert "pg1: max_connections 40 < 133" in output, output
    assert "is unknown in this run" not in output, output


def test_unlimited_alias_is_refused(tmp_path: Path) -> None:
    output = _run_validate(
        tmp_path, {"postgresql_settings": {"max_connections": 200}}, pgbouncer_max_db_connections=0
    )
    assert output.startswith("rc=2"), output
    assert "pgbouncer_max_db_connections (0)" in output, output


def test_no_client_network_is_refused(tmp_path: Path) -> None:
    output = _run_validate(
        tmp_path,
        {"postgresql_settings": {"max_connections": 200}, "postgresql_hba_entries": LAB_HBA[:2]},
    )
    assert output.startswith("rc=2"), output
    assert "would admit no client" in output, output


def test_explicit_lines_are_checked(tmp_path: Path) -> None:
    output = _run_validate(
        tmp_path,
        {"postgresql_settings": {"max_connections": 200}},
        pgbouncer_hba_entries=[{"database": "mdus_db", "user": "all", "address": "10.0.0.0/33"}],
    )
    assert output.startswith("rc=2"), output
    assert "'10.0.0.0/33' is not a CIDR network" in output, output
