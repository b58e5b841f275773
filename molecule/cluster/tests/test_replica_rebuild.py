"""A replica whose data directory belongs to another cluster is refused, then rebuilt on request."""

from __future__ import annotations

import time
from typing import Any

from tests.integration.pglab import DATA_DIR, molecule_playbook, node, psql

PRIMARY = "mdus-cluster-pg1"
REPLICA = "mdus-cluster-pg2"
testinfra_hosts = [PRIMARY]
SYSID = (
    "LC_ALL=C /usr/lib/postgresql/15/bin/pg_controldata %s | awk '/system identifier/ {print $4}'"
)


def test_foreign_cluster_refused_then_rebuilt(host: Any) -> None:
    replica = node(REPLICA)
    primary_id = psql(host, "SELECT system_identifier FROM pg_control_system()")

    # Replace the replica's data directory by an unrelated cluster.
    assert replica.run("systemctl stop postgresql@15-main").rc == 0
    assert (
        replica.run(
            "rm -rf %s && install -d -o postgres -g postgres -m 0700 %s", DATA_DIR, DATA_DIR
        ).rc
        == 0
    )
    init = replica.run(
        "runuser -u postgres -- /usr/lib/postgresql/15/bin/initdb -D %s -A peer", DATA_DIR
    )
    assert init.rc == 0, init.stderr
    foreign_id = replica.run(SYSID, DATA_DIR).stdout.strip()
    assert foreign_id and foreign_id != primary_id

    refused = molecule_playbook("site.yml", {}, limit=REPLICA)
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "belongs to another cluster" in output, output[-3000:]
    assert "postgresql_replica_rebuild=true" in output
    assert replica.run(SYSID, DATA_DIR).stdout.strip() == foreign_id, "data was touched"

    rebuilt = molecule_playbook("site.yml", {"postgresql_replica_rebuild": True}, limit=REPLICA)
    assert rebuilt.returncode == 0, (rebuilt.stdout + rebuilt.stderr)[-3000:]
    assert replica.run(SYSID, DATA_DIR).stdout.strip() == primary_id
    state = ""
    for _ in range(30):
        state = psql(
            host, f"SELECT state FROM pg_stat_replication WHERE application_name = '{REPLICA}'"
        )
        if state == "streaming":
            break
        time.sleep(1)
    assert state == "streaming"
