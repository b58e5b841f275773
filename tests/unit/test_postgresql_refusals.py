"""The postgresql role's preflight refuses input that would weaken access control, and its
pg_hba.conf gives the superuser postgres no route over TCP.

Runs ansible-playbook with the repo's ansible.cfg against the controller itself (as
test_refusal_output.py does): the role's validate entry point, which touches no host, with
the inventory a real database host would have (one primary), its own facts, and fixed
memory and CPU figures for the tuning.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_refusal_output import REPO, run_play

ROLE = REPO / "roles" / "postgresql"

# One database host, the primary, reached with the local connection; fixed memory and CPU
# figures for the tuning validate.yml computes, whatever machine runs the tests.
INVENTORY = {
    "all": {
        "children": {
            "postgres": {"hosts": {"db1": {"ansible_connection": "local"}}},
            "postgres_primary": {"hosts": {"db1": {}}},
        }
    }
}
HOST_VARS = {
    "postgresql_tune_memory_mb": 4096,
    "postgresql_tune_cpus": 2,
    # TLS files are the pki role's business on a real run; there is none here.
    "postgresql_preflight": True,
}

VALIDATE_PLAY = """
- name: Run the postgresql role's input checks
  hosts: db1
  gather_facts: true  # the argument spec's defaults read ansible_facts
  gather_subset: [min, hardware]
  tasks:
    - name: Validate
      ansible.builtin.include_role:
        name: postgresql
        tasks_from: validate
"""

GOOD_HBA = {"type": "hostssl", "database": "all", "user": "all", "method": "scram-sha-256"}

CASES = [
    # 2. pg_hba fields cannot add or cut a line.
    pytest.param(
        {
            "postgresql_hba_entries": [
                {
                    **GOOD_HBA,
                    "address": "10.0.0.0/8",
                    "comment": "app\nhost all all 0.0.0.0/0 trust",
                }
            ]
        },
        ["postgresql_hba_entries[0]", "comment holds a line break"],
        id="hba-comment-newline",
    ),
    pytest.param(
        {
            "postgresql_hba_entries": [
                {**GOOD_HBA, "address": "10.0.0.0/8", "options": "clientcert=verify-full\r\n"}
            ]
        },
        ["postgresql_hba_entries[0]", "options holds a line break"],
        id="hba-options-carriage-return",
    ),
    pytest.param(
        {
            "postgresql_hba_entries": [
                {**GOOD_HBA, "address": "10.0.0.0/8", "options": "clientcert=verify-full # x"}
            ]
        },
        ["postgresql_hba_entries[0]", 'options holds a "#"'],
        id="hba-options-hash",
    ),
    pytest.param(
        {
            "postgresql_hba_entries": [
                {**GOOD_HBA, "user": "mdus_app, postgres", "address": "::1/128"}
            ]
        },
        ["postgresql_hba_entries[0]", "user holds whitespace"],
        id="hba-user-whitespace",
    ),
    pytest.param(
        {"postgresql_hba_entries": [{**GOOD_HBA, "address": "10.0.0.0/8 trust"}]},
        ["postgresql_hba_entries[0]", "address holds whitespace"],
        id="hba-address-whitespace",
    ),
    pytest.param(
        {"postgresql_ident_entries": [{"map": "m", "system_user": "x\ny", "db_user": "postgres"}]},
        ["postgresql_ident_entries[0]", "system_user"],
        id="ident-newline",
    ),
    # 3. postgresql_settings cannot take over or weaken what the role secures.
    pytest.param(
        {"postgresql_settings": {"hba_file": "/tmp/pg_hba.conf"}},
        ["postgresql_settings", "hba_file", "postgresql_hba_entries"],
        id="settings-hba-file",
    ),
    pytest.param(
        {"postgresql_settings": {"ssl_key_file": "/tmp/key"}},
        ["postgresql_settings", "ssl_key_file", "postgresql_ssl_key_file"],
        id="settings-ssl-key-file",
    ),
    pytest.param(
        {"postgresql_settings": {"shared_preload_libraries": "pg_stat_statements"}},
        ["postgresql_settings", "shared_preload_libraries", "postgresql_shared_preload_libraries"],
        id="settings-preload-override",
    ),
    pytest.param(
        {"postgresql_settings": {"ssl_min_protocol_version": "TLSv1.1"}},
        ["postgresql_settings.ssl_min_protocol_version", "postgresql_ssl_min_protocol_version"],
        id="settings-tls11",
    ),
    pytest.param(
        {"postgresql_settings": {"SSL": False}},
        ["postgresql_settings.ssl", "'false'"],
        id="settings-ssl-off",
    ),
    pytest.param(
        {"postgresql_settings": {"password_encryption": "md5"}},
        ["postgresql_settings.password_encryption", "scram-sha-256"],
        id="settings-md5",
    ),
    pytest.param(
        {"postgresql_huge_pages_reserve": True, "postgresql_settings": {"huge_pages": False}},
        ["postgresql_huge_pages_reserve", "postgresql_settings.huge_pages is off"],
        id="huge-pages-reserved-but-off",
    ),
    pytest.param(
        {
            "postgresql_shared_preload_libraries_extra_audit": ["pgaudit"],
            "postgresql_settings": {"pgaudit.log_parameter": "on"},
        },
        ["postgresql_settings.pgaudit.log_parameter"],
        id="settings-pgaudit-parameters",
    ),
    pytest.param(
        {"postgresql_settings": {"log_connections": "off"}},
        ["postgresql_settings.log_connections"],
        id="settings-log-connections-off",
    ),
    pytest.param(
        {"postgresql_settings": {"log_line_prefix": "%m [%p] "}},
        ["postgresql_settings", "log_line_prefix must keep %u"],
        id="settings-log-prefix",
    ),
    pytest.param(
        {"postgresql_settings": {"log_file_mode": "0644"}},
        ["postgresql_settings", "log_file_mode"],
        id="settings-log-file-mode",
    ),
    pytest.param(
        {
            "postgresql_shared_preload_libraries_extra_test": ["pgaudit"],
            "postgresql_settings": {"pgaudit.log": "none"},
        },
        ["postgresql_settings.pgaudit.log", "switches the audit log off"],
        id="settings-pgaudit-none",
    ),
    # 4. Memberships that make a login superuser in all but name.
    pytest.param(
        {
            "postgresql_users": [
                {
                    "name": "etl",
                    "password": "x" * 20,
                    "roles": ["pg_monitor", "pg_read_server_files"],
                }
            ]
        },
        [
            "postgresql_users",
            "etl",
            "pg_read_server_files",
            "postgresql_users_allow_dangerous_roles",
        ],
        id="users-server-files",
    ),
    pytest.param(
        {"postgresql_users": [{"name": "app2", "password": "x" * 20, "roles": ["mdus_owner"]}]},
        ["postgresql_users", "app2", "mdus_owner", "postgresql_users_allow_dangerous_roles"],
        id="users-schema-owner",
    ),
    pytest.param(
        {
            "postgresql_users_allow_dangerous_roles": True,
            "postgresql_users": [{"name": "dba2", "password": "x" * 20, "roles": ["postgres"]}],
        },
        ["postgresql_users", "dba2", "postgres", "never granted"],
        id="users-superuser-even-when-allowed",
    ),
    # 5. Secrets still holding the example inventory's placeholder, named by path.
    pytest.param(
        {"postgresql_users": [{"name": "dba", "password": "CHANGE-ME-dba-password"}]},
        ["Refusing the example placeholder (CHANGE-ME)", "postgresql_users[0].password"],
        id="users-placeholder-password",
    ),
    pytest.param(
        {"postgresql_replication_password": "CHANGE-ME-replication-password"},
        ["Refusing the example placeholder (CHANGE-ME)", "postgresql_replication_password"],
        id="replication-placeholder-password",
    ),
    # 6. Memory and names: more than the host has, a name PostgreSQL does not know.
    pytest.param(
        {"postgresql_settings": {"shared_buffers": "8GB"}},
        ["postgresql_settings.shared_buffers (8GB) is not below the host's memory (4096 MB)"],
        id="settings-shared-buffers-above-memory",
    ),
    pytest.param(
        {"postgresql_settings": {"work_mem": "1GB", "max_connections": 200}},
        ["work_mem (1GB) x max_connections (200) is 200.0 GB", "OOM killer"],
        id="settings-work-mem-times-connections",
    ),
    pytest.param(
        {"postgresql_users": [{"name": "blank", "password": "   "}]},
        ["postgresql_users: the password of blank is empty or only spaces"],
        id="users-blank-password",
    ),
    # 7. Every refused input at once, not only the first one found.
    pytest.param(
        {"postgresql_settings": {"shared_bufers": "1GB", "ssl": "off"}},
        [
            "names shared_bufers: not a PostgreSQL 15 setting (misspelt?)",
            "postgresql_settings.ssl is 'off'",
        ],
        id="settings-two-refusals-named-at-once",
    ),
]


def _run_validate(tmp_path: Path, extra: dict[str, Any]) -> tuple[int, str]:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump(INVENTORY))
    host_vars = tmp_path / "host_vars"
    host_vars.mkdir()
    # Host variables, not extra vars: the role's defaults stay below them as in an inventory.
    (host_vars / "db1.yml").write_text(yaml.safe_dump({**HOST_VARS, **extra}))
    playbook = tmp_path / "play.yml"
    playbook.write_text(VALIDATE_PLAY)
    result, output = run_play(playbook, hosts=str(inventory))
    return result.returncode, output


def test_good_input_passes(tmp_path: Path) -> None:
    rc, output = _run_validate(
        tmp_path,
        {
            "postgresql_settings": {
                "work_mem": "16MB",
                "ssl_min_protocol_version": "TLSv1.3",
                "log_file_mode": "0640",
                "log_destination": "stderr,syslog",
                "log_line_prefix": "%t %u@%d %h ",
            },
            "postgresql_hba_entries": [
                {**GOOD_HBA, "address": "samenet", "options": "clientcert=verify-full map=x"},
                {
                    "type": "local",
                    "database": "all",
                    "user": "all",
                    "method": "peer",
                    "comment": "#1",
                },
            ],
            "postgresql_users": [
                {
                    "name": "dba",
                    "password": "x" * 20,
                    "roles": ["pg_monitor", "pg_read_all_settings"],
                }
            ],
        },
    )
    assert rc == 0, output


def test_dangerous_roles_allowed_by_the_variable(tmp_path: Path) -> None:
    rc, output = _run_validate(
        tmp_path,
        {
            "postgresql_users_allow_dangerous_roles": True,
            "postgresql_users": [
                {"name": "etl", "password": "x" * 20, "roles": ["pg_read_server_files"]}
            ],
        },
    )
    assert rc == 0, output


@pytest.mark.parametrize(("extra", "expected"), CASES)
def test_refused_naming_the_variable(
    tmp_path: Path, extra: dict[str, Any], expected: list[str]
) -> None:
    rc, output = _run_validate(tmp_path, extra)
    assert rc == 2, output
    for words in expected:
        assert words in output, output
    assert "x" * 20 not in output, "a password reached the output"
    assert "CHANGE-ME-" not in output, "a placeholder secret reached the output"


RENDER_PLAY = """
- name: Render the role's pg_hba.conf
  hosts: db1
  gather_facts: false
  vars_files:  # the role's own values, then the sample entries (a later file wins)
    - {role}/defaults/main.yml
    - {role}/vars/main.yml
    - {sample}
  tasks:
    - name: Template
      ansible.builtin.template:
        src: {role}/templates/pg_hba.conf.j2
        dest: {dest}
        mode: "0600"
"""

SAMPLE_HBA = [
    {"type": "local", "database": "all", "user": "all", "method": "peer", "comment": "first"},
    {"type": "hostssl", "database": "all", "user": "all", "address": "samenet", "method": "cert"},
    {
        "type": "hostssl",
        "database": "all,replication",
        "user": "all",
        "address": "0.0.0.0/0",
        "method": "scram-sha-256",
    },
]

REJECTS = {
    (kind, "all,replication", "postgres", address, "reject")
    for kind in ("hostssl", "hostnossl")
    for address in ("0.0.0.0/0", "::/0")
}


def test_pg_hba_rejects_postgres_over_tcp_before_any_other_line(tmp_path: Path) -> None:
    inventory = json.loads(json.dumps(INVENTORY))
    inventory["all"]["children"]["postgres"]["hosts"]["db2"] = {"postgresql_address": "10.0.0.2"}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    sample = tmp_path / "sample.yml"
    sample.write_text(yaml.safe_dump({"postgresql_hba_entries": SAMPLE_HBA}))
    dest = tmp_path / "pg_hba.conf"
    playbook = tmp_path / "play.yml"
    playbook.write_text(RENDER_PLAY.format(role=ROLE, sample=sample, dest=dest))
    result, output = run_play(playbook, hosts=str(tmp_path / "inventory.yml"))
    assert result.returncode == 0, output

    lines = [
        tuple(line.split())
        for line in dest.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert lines[0] == ("local", "all", "postgres", "peer")
    rejects = [i for i, line in enumerate(lines) if line in REJECTS]
    assert {lines[i] for i in rejects} == REJECTS, lines
    assert rejects == [1, 2, 3, 4], lines
    # Every other line (derived pg_rewind and replication lines, the inventory's entries)
    # comes after the rejects; the inventory's three entries are all there.
    rest = lines[5:]
    assert len(rest) == len(lines) - 5
    assert ("local", "all", "all", "peer") in rest
    assert ("hostssl", "all", "all", "samenet", "cert") in rest
    assert ("hostssl", "all,replication", "all", "0.0.0.0/0", "scram-sha-256") in rest
    assert any(line[-2:] == ("cert", "map=mdus_rewind") for line in rest), lines
    assert not [line for line in rest if "postgres" in line[2].split(",") and line[0] != "local"]
    assert re.search(r"(?m)^# first$", dest.read_text())
