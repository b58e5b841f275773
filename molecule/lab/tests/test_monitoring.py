"""Monitoring in the lab: targets over mutual TLS, custom metrics, real alerts end to end.

Runs from the monitoring host (Prometheus and Alertmanager APIs are queried from inside
it, with its host certificate) and reaches the other hosts through Docker. The scenario
lowers the lock-wait and long-query thresholds to 5 s with `for: 0s` and the backup age
limit to 90 s (molecule/lab/host_vars/mdus-lab-mon.yml). Runs after the pgBackRest
tests (alphabetical order), which leave backups in both repositories.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from backup_helpers import PRIMARY, REPLICA, REPO

from tests.integration.pglab import PKI_DIR, STANZA, molecule_playbook, node, psql

PG = PRIMARY
MON = "mdus-lab-mon"
testinfra_hosts = [f"docker://{MON}"]

PROMETHEUS = "https://127.0.0.1:9090"
ALERTMANAGER = "http://127.0.0.1:9093"  # loopback only
RECORDER_FILE = "/var/lib/mdus-alert-recorder/alerts.jsonl"
# GET a URL from inside the monitoring host; argv: url, then "cert" to present the host
# certificate or "nocert"; prints the body, or "ERROR <kind>" when the server refuses.
FETCH = f"""
import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile="{PKI_DIR}/ca.crt")
if sys.argv[2] == "cert":
    ctx.load_cert_chain("{PKI_DIR}/host.crt", "{PKI_DIR}/host.key")
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=10, context=ctx).read().decode())
except Exception as exc:
    print("ERROR", type(exc).__name__, exc)
"""
EXPORTER_DB = "mdus_db"  # inventories/lab/group_vars/postgres.yml
LIVE_ALERTS = {"PostgresLockWait", "PostgresLongRunningQuery"}
BACKUP_ALERT = "PgBackRestBackupTooOld"


def fetch(mon: Any, url: str, cert: bool = True) -> str:
    cmd = mon.run("python3 -c %s %s %s", FETCH, url, "cert" if cert else "nocert")
    assert cmd.rc == 0, cmd.stderr
    return str(cmd.stdout)


@pytest.fixture(scope="module")
def pg() -> Any:
    return node(PG)


def get_json(mon: Any, url: str) -> Any:
    body = fetch(mon, url)
    assert not body.startswith("ERROR"), f"{url}: {body}"
    return json.loads(body)


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


def recorded_alerts(mon: Any, status: str, since: float, instance: str = PG) -> set[str]:
    """Alert names the webhook recorder received with this status after `since`."""
    return {name for name, _ in recorded_alert_labels(mon, status, since, instance)}


def recorded_alert_labels(
    mon: Any, status: str, since: float, instance: str
) -> set[tuple[str, str]]:
    """(alertname, repo label) of the alerts received with this status after `since`."""
    return {
        (alert["labels"]["alertname"], alert["labels"].get("repo", ""))
        for note in recorded(mon)
        if note["received_at"] >= since
        for alert in note["alerts"]
        if alert["status"] == status and alert["labels"].get("instance") == instance
    }


def test_every_scrape_target_is_up(host: Any) -> None:
    expected = {
        ("postgres", PG),
        ("postgres", REPLICA),
        ("node", PG),
        ("node", REPLICA),
        ("node", REPO),
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
        schemes = {t["labels"]["job"]: t["scrapeUrl"].split(":")[0] for t in active}
        assert schemes == {
            "postgres": "https",
            "node": "https",
            "prometheus": "https",
            "alertmanager": "http",
        }, schemes
        return set(found) if all(h == "up" for h in found.values()) else None

    wait_until("every target up", targets, timeout=60)


@pytest.mark.parametrize(
    "url",
    [
        f"https://{PG}:9187/metrics",
        f"https://{REPLICA}:9100/metrics",
        f"https://{REPO}:9100/metrics",
        f"{PROMETHEUS}/api/v1/status/buildinfo",
    ],
)
def test_only_clients_with_a_ca_certificate_get_metrics(host: Any, url: str) -> None:
    """Mutual TLS: no answer in plain HTTP, none over TLS without a client certificate."""
    assert not fetch(host, url).startswith("ERROR"), url
    plain = fetch(host, url.replace("https://", "http://"), cert=False)
    assert plain.startswith("ERROR"), f"plain HTTP answered: {plain[:200]}"
    anonymous = fetch(host, url, cert=False)
    assert anonymous.startswith("ERROR"), f"answered without a certificate: {anonymous[:200]}"


def test_rules_loaded_with_lab_thresholds(host: Any) -> None:
    groups = get_json(host, f"{PROMETHEUS}/api/v1/rules")["data"]["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"] if r["type"] == "alerting"}
    assert len(rules) >= 20
    assert rules["PostgresLockWait"]["query"].endswith("> 5")
    assert rules["PostgresLongRunningQuery"]["query"].endswith("> 5")
    assert all(r["health"] == "ok" for r in rules.values()), rules


def _openssl_fields(node: Any, path: str) -> dict[str, str]:
    out = node.check_output("openssl x509 -noout -enddate -serial -in %s", path)
    return dict(line.split("=", 1) for line in out.splitlines())


def test_certificate_expiry_of_every_host(host: Any) -> None:
    """Each host's certificates reach Prometheus with openssl's expiry and serial; the
    expiry alert is loaded and silent (the lab's certificates are fresh)."""
    for name in (PG, REPLICA, REPO, MON):
        target = node(name)
        for path in (f"{PKI_DIR}/host.crt", f"{PKI_DIR}/ca.crt"):
            fields = _openssl_fields(target, path)
            expiry = datetime.strptime(
                " ".join(fields["notAfter"].split()), "%b %d %H:%M:%S %Y %Z"
            ).replace(tzinfo=UTC)
            expr = (
                f'mdus_certificate_expiry_timestamp_seconds{{instance="{name}",path="{path}",'
                f'serial="{fields["serial"].strip().lower()}"}}'
            )
            found = wait_until(f"{expr} in Prometheus", lambda e=expr: promql(host, e))
            assert float(found[0]["value"][1]) == expiry.timestamp(), (found, fields)
    assert promql(host, "mdus_certificate_read_ok == 0") == [], "an unreadable certificate"
    groups = get_json(host, f"{PROMETHEUS}/api/v1/rules")["data"]["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"] if r["type"] == "alerting"}
    assert rules["CertificateExpiringSoon"]["state"] == "inactive", rules["CertificateExpiringSoon"]


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
    # PgBouncer pools (textfile metrics of the node exporter) on both database hosts
    for instance in (PG, REPLICA):
        assert value(host, f'mdus_pgbouncer_up{{instance="{instance}"}}') == 1, instance
        size = f'mdus_pgbouncer_database_pool_size{{instance="{instance}",database="mdus_db"}}'
        assert value(host, size) == 20
    assert not promql(host, 'mdus_pgbouncer_pool_maxwait_seconds{database="pgbouncer"}')
    # the scenario's 90 s backup age limit is the only critical alert allowed here
    critical = f'ALERTS{{alertstate="firing",severity="critical",alertname!="{BACKUP_ALERT}"}}'
    assert not promql(host, critical)


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
    # its connection and thresholds come from the role's variables (/etc/mdus-health.json):
    # the monitoring role in the exporter's database, the alerts' default thresholds
    config = json.loads(pg.file("/etc/mdus-health.json").content_string)
    assert config["dsn"].startswith(f"user=mdus_monitor dbname={EXPORTER_DB} "), config
    assert float(config["thresholds"]["long_query_seconds"]) == 300, config
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


def test_backup_too_old_alert_fires_and_resolves(host: Any, repo: Any) -> None:
    """From real pgBackRest data: the newest backup of each repository is older than the
    scenario's 90 s limit, so the alert fires for repo1 and repo2; a scheduled backup
    brings fresh timestamps and the alert resolves at the webhook."""
    wanted = {(BACKUP_ALERT, "1"), (BACKUP_ALERT, "2")}
    expr = f'ALERTS{{alertname="{BACKUP_ALERT}",alertstate="firing",backup_type="any"}}'

    def firing() -> set[tuple[str, str]] | None:
        found = {(BACKUP_ALERT, s["metric"]["repo"]) for s in promql(host, expr)}
        return found if found >= wanted else None

    wait_until("the backup age alert firing for both repositories", firing, timeout=240, step=5)
    wait_until(
        "the backup age alert at the webhook",
        lambda: recorded_alert_labels(host, "firing", 0, REPO) >= wanted,
    )
    note = next(
        a
        for n in recorded(host)
        for a in n["alerts"]
        if a["labels"]["alertname"] == BACKUP_ALERT and a["labels"].get("repo") == "2"
    )
    assert note["labels"]["stanza"] == STANZA and note["labels"]["severity"] == "critical"
    assert "in repo2" in note["annotations"]["summary"], note["annotations"]
    assert note["annotations"]["runbook_url"].endswith(f"/{BACKUP_ALERT}.md")

    since = time.time() - 1
    cmd = repo.run(f"systemctl start pgbackrest-{STANZA}-backup@incr.service")
    assert cmd.rc == 0, cmd.stderr
    cmd = repo.run("systemctl start mdus-pgbackrest-metrics.service")
    assert cmd.rc == 0, cmd.stderr
    ages = promql(host, f'mdus_pgbackrest_last_backup_age_seconds{{instance="{REPO}"}}')
    assert ages, "no backup freshness metrics from the repository host"
    # well inside the 90 s the fresh backups stay young
    wait_until(
        "the backup age alert resolved at the webhook",
        lambda: recorded_alert_labels(host, "resolved", since, REPO) >= wanted,
        timeout=75,
    )
