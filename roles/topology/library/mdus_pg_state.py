#!/usr/bin/python3
"""Ansible module: read the replication state of one PostgreSQL host as JSON, read-only.

Runs on the database host as root: pg_controldata and files for a stopped cluster, one
psql query (as the postgres OS user over the local socket) for a running one.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: mdus_pg_state
short_description: Read one PostgreSQL host's replication state (read-only)
description:
  - Whether a cluster exists and runs, in recovery or not, its timeline, system
    identifier, WAL positions, WAL receiver, replication clients, slots, prepared
    transactions, the oldest open transaction, the timeline history and the topology
    record written by the DR playbooks. Never changes anything.
options:
  data_dir: {type: path, default: /var/lib/postgresql/15/main, description: Data directory.}
  bin_dir: {type: path, default: /usr/lib/postgresql/15/bin, description: Server binaries.}
  port: {type: int, default: 5432, description: Server port.}
  socket_dir: {type: path, default: /var/run/postgresql, description: Socket directory.}
  record_path:
    type: path
    default: /var/lib/postgresql/mdus-topology.json
    description: Topology record of the DR playbooks.
  fence_marker:
    type: path
    default: /var/lib/postgresql/mdus-fenced
    description: Written by the start guard when it fenced this host.
"""

QUERY = r"""
SELECT json_build_object(
  'in_recovery', pg_is_in_recovery(),
  'timeline', CASE WHEN pg_is_in_recovery()
                   THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver),
                                 (SELECT timeline_id FROM pg_control_checkpoint()))
                   ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
              END,
  'system_identifier', (SELECT system_identifier::text FROM pg_control_system()),
  'current_lsn', CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
  'receive_lsn', pg_last_wal_receive_lsn()::text,
  'replay_lsn', pg_last_wal_replay_lsn()::text,
  'replay_lag_seconds', CASE WHEN pg_is_in_recovery()
                             THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp())
                        END,
  'receiver', (SELECT json_build_object('status', status, 'sender_host', sender_host,
                                        'received_tli', received_tli,
                                        'flushed_lsn', flushed_lsn::text)
                 FROM pg_stat_wal_receiver),
  'replication', coalesce((SELECT json_agg(json_build_object(
                    'application_name', application_name, 'state', state,
                    'sync_state', sync_state, 'flush_lsn', flush_lsn::text,
                    'replay_lsn', replay_lsn::text,
                    'lag_bytes', pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn)))
                  FROM pg_stat_replication WHERE NOT pg_is_in_recovery()), '[]'),
  'slots', coalesce((SELECT json_agg(slot_name ORDER BY slot_name)
                     FROM pg_replication_slots WHERE slot_type = 'physical'), '[]'),
  'prepared_xacts', (SELECT count(*) FROM pg_prepared_xacts),
  'oldest_xact_seconds', (SELECT coalesce(max(extract(epoch FROM now() - xact_start)), 0)
                            FROM pg_stat_activity
                           WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()),
  'oldest_xact_pids', coalesce((SELECT json_agg(pid || ' ' || usename || ' ' || state)
                                 FROM pg_stat_activity
                                WHERE backend_type = 'client backend'
                                  AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
                                  AND now() - xact_start > interval '5 seconds'), '[]'),
  'synchronous_standby_names', current_setting('synchronous_standby_names'),
  'pending_restart', coalesce((SELECT json_agg(name ORDER BY name) FROM pg_settings
                                WHERE pending_restart), '[]'),
  'postmaster_start', pg_postmaster_start_time()::text
)
"""
CONTROL_FIELDS = {
    "Database cluster state": "cluster_state",
    "Database system identifier": "system_identifier",
    "Latest checkpoint's TimeLineID": "timeline",
    "Latest checkpoint location": "checkpoint_lsn",
    "Minimum recovery ending location": "min_recovery_lsn",
}


def control_data(bin_dir: str, data_dir: str) -> dict[str, Any]:
    out = subprocess.run(
        [f"{bin_dir}/pg_controldata", data_dir],
        capture_output=True,
        text=True,
        env={**os.environ, "LC_ALL": "C"},
        check=False,
        timeout=30,
    )
    found: dict[str, Any] = {}
    for line in out.stdout.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in CONTROL_FIELDS:
            found[CONTROL_FIELDS[key.strip()]] = value.strip()
    if "timeline" in found:
        found["timeline"] = int(found["timeline"])
    return found


def history(data_dir: str, timeline: int | None) -> list[dict[str, Any]]:
    """Switch points of the timeline's history file: [{timeline, switch_lsn}]."""
    if not timeline or timeline < 2:
        return []
    path = Path(data_dir) / "pg_wal" / f"{timeline:08X}.history"
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text().splitlines():
        match = re.match(r"^\s*(\d+)\s+([0-9A-F]+/[0-9A-F]+)", line)
        if match:
            entries.append({"timeline": int(match[1]), "switch_lsn": match[2]})
    return entries


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "data_dir": {"type": "path", "default": "/var/lib/postgresql/15/main"},
            "bin_dir": {"type": "path", "default": "/usr/lib/postgresql/15/bin"},
            "port": {"type": "int", "default": 5432},
            "socket_dir": {"type": "path", "default": "/var/run/postgresql"},
            "record_path": {"type": "path", "default": "/var/lib/postgresql/mdus-topology.json"},
            "fence_marker": {"type": "path", "default": "/var/lib/postgresql/mdus-fenced"},
        },
        supports_check_mode=True,
    )
    p = module.params
    data = Path(p["data_dir"])
    state: dict[str, Any] = {
        "exists": (data / "PG_VERSION").is_file(),
        "running": False,
        "standby_signal": (data / "standby.signal").is_file(),
        "fenced": Path(p["fence_marker"]).is_file(),
        "record": None,
    }
    record = Path(p["record_path"])
    if record.is_file():
        try:
            state["record"] = json.loads(record.read_text())
        except ValueError:
            state["record"] = {"error": f"{record} is not JSON"}
    if state["exists"]:
        state["control"] = control_data(p["bin_dir"], str(data))
        state["system_identifier"] = state["control"].get("system_identifier")
        state["timeline"] = state["control"].get("timeline")
        ready = subprocess.run(
            [f"{p['bin_dir']}/pg_isready", "-q", "-h", p["socket_dir"], "-p", str(p["port"])],
            check=False,
            timeout=30,
        )
        if ready.returncode == 0:
            out = subprocess.run(
                [
                    "runuser",
                    "-u",
                    "postgres",
                    "--",
                    f"{p['bin_dir']}/psql",
                    "-XAtq",
                    "-h",
                    p["socket_dir"],
                    "-p",
                    str(p["port"]),
                    "-d",
                    "postgres",
                    "-c",
                    QUERY,
                ],
                capture_output=True,
                text=True,
                check=False,
                timeout=60,
            )
            if out.returncode != 0:
                module.fail_json(msg=f"cannot query the running server: {out.stderr.strip()}")
            state.update(json.loads(out.stdout))
            state["running"] = True
        elif ready.returncode == 1:  # rejecting connections: starting up or shutting down
            state["running"] = True
            state["starting"] = True
        state["history"] = history(str(data), state.get("timeline"))
    module.exit_json(changed=False, state=state)


if __name__ == "__main__":
    main()
