"""Primary + replica: streaming over verified TLS, refusal of writes and bad input."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

from tests.integration.pglab import CONF_DIR, molecule_playbook, psql

PRIMARY = "mdus-cluster-pg1"
REPLICA = "mdus-cluster-pg2"
testinfra_hosts = [PRIMARY]


def test_replica_is_in_recovery(replica: Any) -> None:
    assert psql(replica, "SELECT pg_is_in_recovery()") == "t"


def test_row_reaches_replica_within_5_seconds(host: Any, replica: Any) -> None:
    marker = str(uuid.uuid4())
    psql(host, "CREATE TABLE IF NOT EXISTS verify_replication (marker text)")
    psql(host, f"INSERT INTO verify_replication VALUES ('{marker}')")
    deadline = time.monotonic() + 5
    seen = ""
    while time.monotonic() < deadline:
        seen = psql(
            replica,
            f"SELECT count(*) FROM verify_replication WHERE marker = '{marker}'",
            check=False,
        )
        if seen == "1":
            break
        time.sleep(0.2)
    assert seen == "1", "the row did not reach the replica within 5 s"


def test_replica_refuses_writes(replica: Any) -> None:
    cmd = replica.run(
        "runuser -u postgres -- psql -X -Atq -c %s",
        "INSERT INTO verify_replication VALUES ('nope')",
    )
    assert cmd.rc != 0
    assert "read-only transaction" in cmd.stderr


def test_streaming_over_tls_through_its_slot(host: Any) -> None:
    row = psql(
        host,
        "SELECT r.state, s.ssl, r.sync_state FROM pg_stat_replication r "
        f"JOIN pg_stat_ssl s USING (pid) WHERE r.application_name = '{REPLICA}'",
    )
    assert row == "streaming|t|async"
    slot = psql(
        host,
        "SELECT slot_type, active FROM pg_replication_slots "
        "WHERE slot_name = 'replica_mdus_cluster_pg2'",
    )
    assert slot == "physical|t"


def test_replica_verifies_the_primary_certificate(replica: Any) -> None:
    conninfo = psql(replica, "SELECT conninfo FROM pg_stat_wal_receiver")
    assert "sslmode=verify-full" in conninfo
    assert f"host={PRIMARY}" in conninfo
    assert psql(replica, "SHOW primary_slot_name") == "replica_mdus_cluster_pg2"
    assert psql(replica, "SHOW hot_standby") == "on"


def test_primary_and_replica_share_the_system_identifier(host: Any, replica: Any) -> None:
    sql = "SELECT system_identifier FROM pg_control_system()"
    assert psql(host, sql) == psql(replica, sql)


def test_two_primaries_are_refused_before_any_change(host: Any, tmp_path: Path) -> None:
    extra = tmp_path / "two-primaries.yml"
    extra.write_text(f"postgres_primary:\n  hosts:\n    {REPLICA}:\n")
    before = host.run("sha256sum %s/postgresql.conf %s/pg_hba.conf", CONF_DIR, CONF_DIR).stdout
    result = molecule_playbook("site.yml", {}, extra_inventory=extra)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "postgres_primary must hold exactly one host; it holds 2" in output, output[-3000:]
    assert PRIMARY in output and REPLICA in output
    assert "changed=0" in output
    assert (
        host.run("sha256sum %s/postgresql.conf %s/pg_hba.conf", CONF_DIR, CONF_DIR).stdout == before
    )


def test_replica_has_the_migrated_schema(host: Any, replica: Any) -> None:
    sql = "SELECT string_agg(version, ',' ORDER BY version) FROM schema_migrations WHERE success"
    applied = psql(host, sql, db="mdus_db")
    assert applied.startswith("001,002,003")
    assert psql(replica, sql, db="mdus_db") == applied


def test_huge_pages_refused_where_the_kernel_setting_is_not_the_hosts(replica: Any) -> None:
    """A container's vm.nr_hugepages is the Docker host's (read-only here): the role refuses
    before it writes anything, and the server runs on untouched."""
    needed = int(psql(replica, "SHOW shared_memory_size_in_huge_pages"))
    free = replica.run("awk '/^HugePages_(Free|Rsvd):/ {print $2}' /proc/meminfo").stdout.split()
    assert int(free[0]) - int(free[1]) < needed, "needs a Docker host without free huge pages"
    started = psql(replica, "SELECT pg_postmaster_start_time()")
    result = molecule_playbook(
        "site.yml",
        {"postgresql_huge_pages_reserve": True},
        limit=REPLICA,
        options=("--tags", "postgresql-hugepages"),
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-2000:]
    assert f"the server needs {needed} huge pages" in output, output[-3000:]
    assert "vm.nr_hugepages is read-only here" in output
    assert "changed=0" in output
    assert not replica.file("/etc/sysctl.d/60-mdus-hugepages.conf").exists
    assert psql(replica, "SELECT pg_postmaster_start_time()") == started
