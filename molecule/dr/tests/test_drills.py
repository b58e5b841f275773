"""DR drills, run in this order from the controller, each measured from a client that
writes through PgBouncer: RPO (acknowledged writes lost) and RTO (longest gap between
acknowledged writes). Every drill's JSON lands in molecule/dr/.drills/ (git-ignored)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import errors

from tests.integration.clients import container_ip, lab_ca
from tests.integration.drill import drill, textfile
from tests.integration.pglab import changed_tasks, lab_secret, molecule_playbook, node, psql, recap

PG1, PG2, PG3, REPO = "mdus-dr-pg1", "mdus-dr-pg2", "mdus-dr-pg3", "mdus-dr-repo"
DB_HOSTS = (PG1, PG2, PG3)
testinfra_hosts = [PG1]
OUT = Path(__file__).resolve().parents[1] / ".drills"
REPORTS = Path(os.environ.get("MOLECULE_EPHEMERAL_DIRECTORY", "/tmp")) / "dr-reports"
RESULTS: list[dict[str, Any]] = []
ADDRESSES = {h: container_ip(h) for h in DB_HOSTS}  # before any container is stopped


def dsn(hosts: tuple[str, ...] = DB_HOSTS) -> str:
    """The probe's DSN: every PgBouncer, the first that serves writes wins."""
    return (
        f"host={','.join(ADDRESSES[h] for h in hosts)} port=6432 dbname=mdus_drill "
        f"user=mdus_drill password={lab_secret('mdus_drill')} sslmode=verify-full "
        f"sslrootcert={lab_ca()} connect_timeout=2 target_session_attrs=read-write"
    )


def playbook(name: str, **extra: Any) -> Any:
    return molecule_playbook(f"playbooks/{name}.yml", {"dr_report_dir": str(REPORTS), **extra})


def in_recovery(name: str) -> bool:
    return psql(node(name), "SELECT pg_is_in_recovery()") == "t"


def streaming_from(primary: str) -> set[str]:
    rows = psql(
        node(primary),
        "SELECT application_name FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid)"
        " WHERE r.state = 'streaming' AND s.ssl",
    )
    return set(rows.split())


def wait_streaming(primary: str, replicas: set[str], seconds: int = 60) -> None:
    for _ in range(seconds):
        if replicas <= streaming_from(primary):
            return
        time.sleep(1)
    raise AssertionError(f"{replicas} not streaming from {primary}: {streaming_from(primary)}")


def last_report(operation: str) -> dict[str, Any]:
    reports = sorted(REPORTS.glob(f"{operation}-*.json"))
    assert reports, f"no {operation} report in {REPORTS}"
    return json.loads(reports[-1].read_text())


def record(result: dict[str, Any], **extra: Any) -> dict[str, Any]:
    result.update(extra)
    RESULTS.append(result)
    print(json.dumps({k: v for k, v in result.items() if k != "action_output"}, indent=1))
    return result


def output(result: dict[str, Any]) -> str:
    return str(result.get("action_output", ""))


def test_switchover_and_back_under_load() -> None:
    for name, old, new in (("switchover", PG1, PG2), ("switchback", PG2, PG1)):
        result = drill(name, dsn(), lambda new=new: playbook("switchover", target=new), out_dir=OUT)
        report = last_report("switchover")
        record(
            result,
            pause_seconds=report["timing"].get("pause_seconds"),
            phases=report["timing"]["phases"],
            expected_rpo_kept=result["rpo_lost_writes"] == 0,
        )
        assert result["action_rc"] == 0, output(result)
        assert result["rpo_lost_writes"] == 0, result
        assert result["client_errors"] == 0, result["first_errors"]
        assert result["acked"] > 100
        assert not in_recovery(new) and in_recovery(old)
        wait_streaming(new, {old, PG3})


def test_switchover_refused_when_the_target_cannot_take_over() -> None:
    """The target's WAL receiver is stopped and the primary writes on: the preflight
    refuses, names the reason, and nothing changes anywhere."""
    primary, target = node(PG1), node(PG2)
    started = psql(primary, "SELECT pg_postmaster_start_time()")
    psql(target, "ALTER SYSTEM SET primary_conninfo = ''")
    psql(target, "SELECT pg_reload_conf()")
    try:
        psql(primary, "CREATE TABLE IF NOT EXISTS lag_filler AS SELECT 1 AS x", db="mdus_drill")
        refused = playbook("switchover", target=PG2)
        text = refused.stdout + refused.stderr
        assert refused.returncode != 0
        assert "Switchover to mdus-dr-pg2 refused" in text and "not streaming from" in text, text[
            -2000:
        ]
        assert psql(primary, "SELECT pg_postmaster_start_time()") == started
        assert not in_recovery(PG1) and in_recovery(PG2)
        paused = primary.run(
            "runuser -u postgres -- psql -XAt --csv -h /run/pgbouncer -p 6432 -d pgbouncer"
            " -c 'SHOW DATABASES'"
        ).stdout
        assert ",1,0" not in paused  # no pool left paused (paused,disabled columns)
    finally:
        psql(target, "ALTER SYSTEM RESET primary_conninfo")
        psql(target, "SELECT pg_reload_conf()")
    wait_streaming(PG1, {PG2, PG3})


def test_failover_after_sigkill_with_synchronous_replication() -> None:
    def crash_and_fail_over() -> Any:
        node(PG1).run("pkill -KILL -f 'bin/postgres -D'")
        os.system(f"docker stop -t 5 {PG1} >/dev/null")
        return playbook("failover")

    result = drill("failover", dsn(), crash_and_fail_over, out_dir=OUT, settle=6)
    assert result["action_rc"] == 0, output(result)
    report = last_report("failover")
    record(
        result,
        phases=report["timing"]["phases"],
        needs_rejoin=report["extra"]["needs_rejoin"],
        expected_rpo_kept=result["rpo_lost_writes"] == 0,
    )
    assert result["action_rc"] == 0, output(result)
    assert result["rpo_lost_writes"] == 0, result  # synchronous_standby_names: ANY 1
    new = report["new_primary"]
    assert new in (PG2, PG3) and not in_recovery(new)
    assert report["extra"]["needs_rejoin"][0] == PG1


def test_old_primary_comes_back_fenced() -> None:
    new = last_report("failover")["new_primary"]
    assert os.system(f"docker start {PG1} >/dev/null") == 0
    old = node(PG1)
    for _ in range(60):
        if old.run("runuser -u postgres -- pg_isready -q").rc == 0:
            break
        time.sleep(1)
    assert in_recovery(PG1), "the old primary started as a primary"
    assert old.file("/var/lib/postgresql/mdus-fenced").exists
    direct = dsn((PG1,)).replace(" target_session_attrs=read-write", "")
    with pytest.raises(errors.ReadOnlySqlTransaction), psycopg.connect(direct) as conn:
        conn.execute("INSERT INTO probe (id, run) VALUES (-1, 'fenced')")  # no writes there
    refused = molecule_playbook("site.yml", {})
    text = refused.stdout + refused.stderr
    assert in_recovery(PG1) and not in_recovery(new), "site.yml promoted the old primary"
    if refused.returncode != 0:
        assert "rejoin.yml -e host=mdus-dr-pg1" in text, text[-3000:]


@pytest.mark.parametrize("method", ["auto", "restore"])
def test_rejoin(method: str) -> None:
    new = last_report("failover")["new_primary"]
    result = drill(
        f"rejoin-{method}",
        dsn(),
        lambda: playbook("rejoin", host=PG1, dr_rejoin_method=method),
        out_dir=OUT,
    )
    report = last_report("rejoin")
    record(
        result,
        method=report["extra"]["method"],
        phases=report["timing"]["phases"],
        expected_rpo_kept=result["rpo_lost_writes"] == 0,
    )
    assert result["action_rc"] == 0, output(result)
    assert result["rpo_lost_writes"] == 0 and result["client_errors"] == 0, result
    assert report["extra"]["method"] == ("rewind" if method == "auto" else "restore"), report
    wait_streaming(new, {PG1})
    assert not node(PG1).file("/var/lib/postgresql/mdus-fenced").exists


PINNED = str(
    yaml.safe_load((Path(__file__).parents[1] / "host_vars" / f"{PG1}.yml").read_text())[
        "postgresql_package_version"
    ]
).split("-")[0]


def versions(name: str) -> tuple[str, str]:
    """(running, installed) PostgreSQL version of a node."""
    running = psql(node(name), "SHOW server_version").split()[0]
    installed = node(name).check_output("/usr/lib/postgresql/15/bin/postgres --version").split()[2]
    return running, installed


def test_minor_update_rolling_without_client_errors() -> None:
    """The scenario installs an older minor (host_vars: postgresql_package_version);
    minor_update.yml updates the packages node by node (replicas first, each streaming
    again before the next; the primary with PgBouncer paused) and restarts each on its new
    binary: no failed client transaction, every node on the newer version."""
    new = last_report("failover")["new_primary"]
    before = {h: versions(h) for h in DB_HOSTS}
    # Still the release the scenario installed: the postgresql role holds the server
    # packages, so no later install (pgbackrest, pgbouncer, ...) pulled a newer one.
    assert all(b == (PINNED, PINNED) for b in before.values()), before
    started = {h: psql(node(h), "SELECT pg_postmaster_start_time()") for h in DB_HOSTS}
    result = drill("minor-update", dsn(), lambda: playbook("minor_update"), out_dir=OUT)
    after = {h: versions(h) for h in DB_HOSTS}
    record(result, versions_before=before, versions_after=after)
    assert result["action_rc"] == 0, output(result)
    assert result["rpo_lost_writes"] == 0 and result["client_errors"] == 0, result
    for h in DB_HOSTS:
        old, now = before[h][0], after[h][0]
        assert after[h][0] == after[h][1], (h, after[h])
        assert tuple(map(int, now.split("."))) > tuple(map(int, old.split("."))), (h, old, now)
    assert all(psql(node(h), "SELECT pg_postmaster_start_time()") != started[h] for h in DB_HOSTS)
    assert not node(PG1).file("/usr/sbin/policy-rc.d").exists
    assert not in_recovery(new)
    wait_streaming(new, {h for h in DB_HOSTS if h != new})
    again = playbook("rolling_restart")
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert "the primary needed no restart" in again.stdout, again.stdout[-3000:]
    assert not changed_tasks(again.stdout), changed_tasks(again.stdout)


def test_site_converges_unchanged_on_the_new_topology() -> None:
    new = last_report("failover")["new_primary"]
    rerun = molecule_playbook("site.yml", {})
    text = rerun.stdout + rerun.stderr
    assert rerun.returncode == 0, text[-3000:]
    changed = recap(text)
    assert changed and not any(changed.values()), changed_tasks(text)
    assert f"primary {new} (record)" in text
    replicas = {h for h in DB_HOSTS if h != new}
    wait_streaming(new, replicas)
    check = node(new).run("runuser -u postgres -- pgbackrest --stanza=mdus check")
    assert check.rc == 0, check.stderr


def test_drill_results_reach_node_exporter() -> None:
    assert len(RESULTS) == 6, [r["drill"] for r in RESULTS]
    OUT.mkdir(exist_ok=True)
    (OUT / "summary.json").write_text(json.dumps(RESULTS, indent=2) + "\n")
    metrics = OUT / "mdus_dr_drills.prom"
    metrics.write_text(textfile(RESULTS))
    published = molecule_playbook(
        "playbooks/drill_metrics.yml", {"drill_metrics_file": str(metrics)}
    )
    assert published.returncode == 0, (published.stdout + published.stderr)[-2000:]
    scrape = node(PG2).run(
        'python3 -c "import ssl, urllib.request as u; c = ssl.create_default_context('
        "cafile='/etc/mdus-pki/ca.crt'); c.load_cert_chain('/etc/mdus-pki/host.crt',"
        " '/etc/mdus-pki/host.key'); print(u.urlopen('https://mdus-dr-pg2:9100/metrics',"
        ' context=c).read().decode())"'
    )
    assert scrape.rc == 0, scrape.stderr
    assert 'mdus_dr_drill_success{drill="failover"} 1' in scrape.stdout
    assert 'mdus_dr_drill_rpo_lost_writes{drill="switchover"} 0' in scrape.stdout
