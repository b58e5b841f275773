"""Monitoring in the lab: targets, custom metrics, and a real alert end to end.

Runs from the monitoring host (Prometheus and Alertmanager APIs are queried from inside
it) and reaches the PostgreSQL host through Docker. The scenario lowers the lock-wait and
long-query thresholds to 5 s with `for: 0s` (molecule/monitoring/host_vars/).
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import testinfra

from tests.integration.pglab import molecule_playbook, psql

PG = "mdus-monitoring-pg1"
MON = "mdus-monitoring-mon1"
testinfra_hosts = [f"docker://{MON}"]

PROMETHEUS = "http://127.0.0.1:9090"
ALERTMANAGER = "http://127.0.0.1:9093"
RECORDER_FILE = "/var/lib/mdus-alert-recorder/alerts.jsonl"
FETCH = (
    "import sys, urllib.request;"
    " print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())"
)
EXPORTER_DB = "mdus_db"  # molecule/monitoring/host_vars/mdus-monitoring-pg1.yml
LIVE_ALERTS = {"PostgresLockWait", "PostgresLongRunningQuery"}


@pytest.fixture(scope="module")
def pg() -> Any:
    return testinfra.get_host(f"docker://{PG}")


def get_json(mon: Any, url: str) -> Any:
    cmd = mon.run("python3 -c %s %s", FETCH, url)
    assert cmd.rc == 0, cmd.stderr
    return json.loads(cmd.stdout)


def promql(mon: Any, expr: str) -> list[dict[str, Any]]:
    url = f"{PROMETHEUS}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    body = get_json(mon, url)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def value(mon: Any, expr: str) -> float:
    result = promql(mon, expr)
    assert len(result) == 1, f"{expr}: {result}"
    return float(result[0]["value"][1])


def wait_until(what: str, probe: Callable[[], Any], timeout: float = 90, step: float = 2) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")


def recorded(mon: Any) -> list[dict[str, Any]]:
    text = mon.run("cat %s", RECORDER_FILE).stdout
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def recorded_alerts(mon: Any, status: str, since: float) -> set[str]:
    """Alert names the webhook recorder received with this status after `since`."""
    return {
        alert["labels"]["alertname"]
        for note in recorded(mon)
        if note["received_at"] >= since
        for alert in note["alerts"]
        if alert["status"] == status and alert["labels"].get("instance") == PG
    }


def test_every_scrape_target_is_up(host: Any) -> None:
    expected = {
        ("postgres", PG),
        ("node", PG),
        ("node", MON),
        ("prometheus", MON),
        ("alertmanager", MON),
    }

    def targets() -> set[tuple[str, str]] | None:
        active = get_json(host, f"{PROMETHEUS}/api/v1/targets?state=active")["data"][
            "activeTargets"
        ]
        found = {(t["labels"]["job"], t["labels"]["instance"]): t["health"] for t in active}
        assert set(found) == expected, found
        return set(found) if all(h == "up" for h in found.values()) else None

    wait_until("every target up", targets, timeout=60)


def test_rules_loaded_with_lab_thresholds(host: Any) -> None:
    groups = get_json(host, f"{PROMETHEUS}/api/v1/rules")["data"]["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"] if r["type"] == "alerting"}
    assert len(rules) >= 20
    assert rules["PostgresLockWait"]["query"].endswith("> 5")
    assert rules["PostgresLongRunningQuery"]["query"].endswith("> 5")
    assert all(r["health"] == "ok" for r in rules.values()), rules


@pytest.fixture(scope="module")
def sample_tables(pg: Any) -> Iterator[None]:
    """Tables in the exporter's database: dead tuples and a default partition with rows."""
    psql(pg, "DROP TABLE IF EXISTS verify_dead, verify_parts", db=EXPORTER_DB)
    psql(pg, "CREATE TABLE verify_dead (id int) WITH (autovacuum_enabled = off)", db=EXPORTER_DB)
    psql(pg, "INSERT INTO verify_dead SELECT generate_series(1, 1000)", db=EXPORTER_DB)
    psql(pg, "DELETE FROM verify_dead WHERE id <= 400", db=EXPORTER_DB)
    psql(pg, "CREATE TABLE verify_parts (id int, at date) PARTITION BY RANGE (at)", db=EXPORTER_DB)
    psql(pg, "CREATE TABLE verify_parts_default PARTITION OF verify_parts DEFAULT", db=EXPORTER_DB)
    psql(
        pg,
        "INSERT INTO verify_parts SELECT g, current_date FROM generate_series(1, 25) g",
        db=EXPORTER_DB,
    )
    yield
    psql(pg, "DROP TABLE IF EXISTS verify_dead, verify_parts", db=EXPORTER_DB)


def test_custom_metrics_exist_with_sane_values(host: Any, sample_tables: None) -> None:
    job = f'instance="{PG}"'
    assert value(host, f"pg_up{{{job}}}") == 1
    assert value(host, f"pg_exporter_last_scrape_error{{{job}}}") == 0, "a custom query fails"
    assert value(host, f"pg_mdus_activity_connections_available{{{job}}}") == 197
    assert 1 <= value(host, f"pg_mdus_activity_connections_used{{{job}}}") < 197
    assert value(host, f"pg_mdus_activity_oldest_active_query_seconds{{{job}}}") < 5
    assert value(host, f"pg_mdus_activity_oldest_lock_wait_seconds{{{job}}}") == 0
    assert value(host, f"pg_mdus_server_is_replica{{{job}}}") == 0
    started = value(host, f"pg_mdus_server_start_time_seconds{{{job}}}")
    assert time.time() - 86400 < started < time.time()
    assert value(host, f"pg_mdus_server_version_num{{{job}}}") // 10000 == 15
    # an idle primary: lag 0, no WAL receiver
    assert value(host, f"pg_mdus_replication_lag_seconds{{{job}}}") == 0
    assert value(host, f"pg_mdus_replication_wal_receiver_streaming{{{job}}}") == 0
    assert value(host, f"pg_mdus_archiver_enabled{{{job}}}") in (0, 1)
    assert value(host, f'pg_mdus_xid_wraparound_headroom{{{job},datname="{EXPORTER_DB}"}}') > 2e9
    assert value(host, f'pg_mdus_extension_installed{{{job},extname="pg_stat_statements"}}') == 1
    assert value(host, f'pg_mdus_extension_installed{{{job},extname="pg_partman"}}') == 1
    assert promql(host, f"pg_mdus_statements_calls{{{job}}} > 0"), "no top statements"
    assert value(host, f'node_filesystem_size_bytes{{{job},mountpoint="/"}}') > 0
    dead = f'pg_mdus_dead_tuples_dead{{{job},relname="verify_dead"}}'
    wait_until("dead tuples of verify_dead", lambda: promql(host, f"{dead} == 400"), timeout=60)
    assert value(host, f'pg_mdus_dead_tuples_live{{{job},relname="verify_dead"}}') == 600
    # the MDUS schema's own pg_partman default partitions are watched too
    mdus_defaults = promql(host, f'pg_mdus_default_partition_rows{{{job},parent="audit_logs"}}')
    assert [float(s["value"][1]) >= 0 for s in mdus_defaults] == [True], mdus_defaults
    rows = f'pg_mdus_default_partition_rows{{{job},partition="verify_parts_default"}}'
    wait_until("rows in verify_parts_default", lambda: promql(host, f"{rows} == 25"), timeout=60)
    assert not promql(host, 'ALERTS{alertstate="firing",severity="critical"}')


@pytest.fixture
def lock_and_long_query(pg: Any) -> Iterator[None]:
    """A session holds an exclusive lock while running pg_sleep; another waits for it."""
    psql(pg, "CREATE TABLE IF NOT EXISTS verify_lock (id int)")
    holder = (
        "BEGIN; LOCK TABLE verify_lock IN ACCESS EXCLUSIVE MODE;"
        " SELECT pg_sleep(100) /* verify-holder */; COMMIT;"
    )
    for sql in (holder, "SELECT count(*) FROM verify_lock /* verify-waiter */"):
        cmd = pg.run(
            "setsid timeout 110 runuser -u postgres -- psql -X -q -d postgres -c %s"
            " > /dev/null 2>&1 < /dev/null &",
            sql,
        )
        assert cmd.rc == 0, cmd.stderr
        time.sleep(1)
    try:
        yield
    finally:
        psql(
            pg,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE query LIKE '%verify-holder%' AND pid <> pg_backend_pid()",
        )


def test_lock_wait_and_long_query_alerts_fire_and_resolve(
    host: Any, pg: Any, lock_and_long_query: None
) -> None:
    started = time.time() - 5

    # mdus-health on the database host sees the same problem (exit code 2, reasons).
    def unhealthy() -> dict[str, Any] | None:
        cmd = pg.run(
            "runuser -u prometheus -- mdus-health --json check"
            " --long-query-seconds 5 --lock-wait-seconds 5"
        )
        report = json.loads(cmd.stdout)
        return report if cmd.rc == 2 and len(report["reasons"]) >= 2 else None

    report = wait_until("mdus-health reporting the problem", unhealthy, timeout=30)
    assert report["status"] == "unhealthy"
    assert {r.split(":")[0] for r in report["reasons"]} >= {"long_queries", "lock_waits"}

    def in_alertmanager() -> set[str] | None:
        alerts = get_json(host, f"{ALERTMANAGER}/api/v2/alerts?active=true")
        names = {a["labels"]["alertname"] for a in alerts if a["labels"].get("instance") == PG}
        return names if names >= LIVE_ALERTS else None

    wait_until("both alerts in Alertmanager", in_alertmanager, timeout=60)
    wait_until(
        "both alerts at the webhook",
        lambda: recorded_alerts(host, "firing", started) >= LIVE_ALERTS,
    )
    firing = next(
        a
        for note in recorded(host)
        for a in note["alerts"]
        if a["labels"]["alertname"] == "PostgresLockWait" and a["status"] == "firing"
    )
    assert firing["labels"]["severity"] == "warning"
    assert firing["annotations"]["runbook_url"].endswith("/PostgresLockWait.md")
    assert PG in firing["annotations"]["summary"]

    # End the condition: the holder goes, the waiter gets its lock and finishes.
    psql(
        pg,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE query LIKE '%verify-holder%' AND pid <> pg_backend_pid()",
    )
    wait_until(
        "both alerts resolved at the webhook",
        lambda: recorded_alerts(host, "resolved", started) >= LIVE_ALERTS,
    )

    def gone_from_alertmanager() -> bool:
        alerts = get_json(host, f"{ALERTMANAGER}/api/v2/alerts?active=true")
        return not any(
            a["labels"]["alertname"] in LIVE_ALERTS and a["labels"].get("instance") == PG
            for a in alerts
        )

    wait_until("Alertmanager without the alerts", gone_from_alertmanager, timeout=60)


def test_health_cli_reports_healthy(pg: Any) -> None:
    cmd = pg.run("runuser -u prometheus -- mdus-health --json check")
    report = json.loads(cmd.stdout)
    assert cmd.rc == 0, report
    assert report["status"] == "healthy"
    stats = pg.run("runuser -u prometheus -- mdus-health --json stats")
    assert stats.rc == 0, stats.stderr
    assert "postgres" in {d["datname"] for d in json.loads(stats.stdout)["databases"]}


def test_health_playbook_prints_a_table() -> None:
    run = molecule_playbook("playbooks/health.yml", {"health_fail_on": "unhealthy"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    line = next(line for line in run.stdout.splitlines() if PG in line and "healthy" in line)
    assert "unhealthy" not in line
