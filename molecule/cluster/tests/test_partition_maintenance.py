"""Partition maintenance on a timer (mdus_schema): the timer runs on both database hosts;
a run on the primary maintains every pg_partman set and logs it, a run on the replica
says it has nothing to do and succeeds (so the timer follows a switchover by itself)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.pglab import node, psql

PRIMARY = "mdus-cluster-pg1"
REPLICA = "mdus-cluster-pg2"
testinfra_hosts = [PRIMARY]
SERVICE = "mdus-partition-maintenance.service"


def run_once(host: Any) -> str:
    since = host.run("date '+%Y-%m-%d %H:%M:%S'").stdout.strip()
    started = host.run("systemctl start %s", SERVICE)
    journal = host.run("journalctl -u %s --since %s --no-pager -o cat", SERVICE, since).stdout
    assert started.rc == 0, started.stderr + journal
    return journal


def log_rows(host: Any) -> int:
    return int(psql(host, "SELECT count(*) FROM partition_maintenance_log", db="mdus_db"))


@pytest.mark.parametrize("name", [PRIMARY, REPLICA])
def test_timer_is_enabled_and_waiting(name: str) -> None:
    timer = node(name).service("mdus-partition-maintenance.timer")
    assert timer.is_enabled and timer.is_running


def test_a_run_on_the_primary_maintains_and_logs_every_set(host: Any) -> None:
    before = log_rows(host)
    journal = run_once(host)
    assert log_rows(host) == before + 2, journal
    assert "public.audit_logs: maintained" in journal, journal
    assert "public.processing_metrics: maintained" in journal, journal


def test_a_run_on_the_replica_does_nothing_and_succeeds(replica: Any) -> None:
    journal = run_once(replica)
    assert "replica: partition maintenance runs on the primary" in journal, journal
