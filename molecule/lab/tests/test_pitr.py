"""Point-in-time recovery with playbooks/pitr.yml, run from the controller as an operator
would: marker rows, a noted moment, a destructive change, then a side restore to that
moment (repo1) and to a named restore point (repo2) on the replica host, read from the
controller over TLS; the refusals; last, the whole cluster back in place (a failed attempt
that leaves it as it was, then one that succeeds). The files after this one (pki, rerun,
restore check) run on the recovered cluster."""

from __future__ import annotations

import json
import re
import secrets
import time
from pathlib import Path
from typing import Any

import psycopg
from backup_helpers import REPLICA, backups_in, info, switch_wal, wait_archived

from tests.integration.clients import bouncer_dsn, container_ip, lab_ca
from tests.integration.pglab import lab_secret, molecule_playbook, psql, recap

PITR_DIR = "/var/lib/postgresql/mdus-pitr"
PORT = "5499"


def pitr(**extra: Any) -> Any:
    return molecule_playbook("playbooks/pitr.yml", extra)


def side(replica: Any, sql: str) -> str:
    """SQL on the side restore, as postgres over its own socket."""
    cmd = replica.run(
        "runuser -u postgres -- psql -X -Atq -h %s -p %s -d postgres -c %s", PITR_DIR, PORT, sql
    )
    assert cmd.rc == 0, cmd.stderr
    return cmd.stdout.strip()


def archived_now(primary: Any) -> None:
    wait_archived(primary, switch_wal(primary))


def test_side_restore_to_a_moment_brings_back_what_was_dropped(primary: Any, replica: Any) -> None:
    psql(primary, "DROP TABLE IF EXISTS pitr_keep; DROP TABLE IF EXISTS pitr_dropped")
    psql(primary, "CREATE TABLE pitr_keep (note text); INSERT INTO pitr_keep VALUES ('before')")
    psql(primary, "CREATE TABLE pitr_dropped (n int); INSERT INTO pitr_dropped VALUES (42)")
    time.sleep(1.1)
    moment = psql(primary, "SELECT to_char(now(), 'YYYY-MM-DD HH24:MI:SS.US+00')")
    time.sleep(1.1)
    psql(primary, "INSERT INTO pitr_keep VALUES ('after'); DROP TABLE pitr_dropped")
    archived_now(primary)

    try:
        side_restore_checks(primary, replica, moment)
    finally:
        pitr(pitr_remove=True)
    assert not replica.file(PITR_DIR).exists


def side_restore_checks(primary: Any, replica: Any, moment: str) -> None:
    result = pitr(pitr_target_time=moment)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "reached_lsn" in output and "psql" in output, output[-3000:]
    assert side(replica, "SELECT string_agg(note, ',') FROM pitr_keep") == "before"
    assert side(replica, "SELECT n FROM pitr_dropped") == "42"
    assert side(replica, "SELECT pg_is_in_recovery()") == "f"  # promoted at the target
    assert side(replica, "SHOW default_transaction_read_only") == "on"
    assert side(replica, "SELECT current_setting('archive_mode')") == "off"
    log = replica.file(f"{PITR_DIR}/postgresql.log").content_string
    assert "restored log file" in log, log[-2000:]  # WAL came from the repository
    assert psql(primary, "SELECT to_regclass('pitr_dropped')") == ""  # production untouched

    # From the controller, as a client: TLS verify-full, the restored roles' passwords.
    dsn = (
        f"host={container_ip(REPLICA)} port={PORT} dbname=mdus_db user=mdus_app "
        f"password={lab_secret('mdus_app')} sslmode=verify-full sslrootcert={lab_ca()}"
    )
    with psycopg.connect(dsn, connect_timeout=10) as conn:
        assert conn.info.pgconn.ssl_in_use
        assert conn.execute("SHOW transaction_read_only").fetchone() == ("on",)

    again = pitr(pitr_target_time=moment)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    changed = recap(again.stdout)
    assert changed and not any(changed.values()), again.stdout[-2000:]

    other = pitr(pitr_target="latest")
    assert other.returncode != 0
    assert "already holds a side restore" in other.stdout, other.stdout[-3000:]

    removed = pitr(pitr_remove=True)
    assert removed.returncode == 0, (removed.stdout + removed.stderr)[-3000:]


def test_side_restore_to_a_restore_point_from_repo2(primary: Any, replica: Any) -> None:
    name = f"pitr_drill_{secrets.token_hex(4)}"
    psql(primary, "DROP TABLE IF EXISTS pitr_rp")
    psql(primary, "CREATE TABLE pitr_rp (note text); INSERT INTO pitr_rp VALUES ('kept')")
    psql(primary, f"SELECT pg_create_restore_point('{name}')")
    psql(primary, "DELETE FROM pitr_rp")
    archived_now(primary)
    try:
        result = pitr(pitr_restore_point=name, pitr_repo=2)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        assert side(replica, "SELECT string_agg(note, ',') FROM pitr_rp") == "kept"
        log = replica.file(f"{PITR_DIR}/postgresql.log").content_string
        assert f'recovery stopping at restore point "{name}"' in log, log[-2000:]
    finally:
        pitr(pitr_remove=True)


MIGRATE = (
    "runuser -u postgres -- env PGHOST=/var/run/postgresql PGDATABASE=mdus_db "
    "PGUSER=mdus_migrator PGAPPNAME=mdus-migrate python3 /opt/mdus/schema/migrate.py"
)


def migrate(primary: Any, *args: str) -> dict[str, Any]:
    cmd = primary.run(f"{MIGRATE} {' '.join(args)} --json --dir /opt/mdus/schema/migrations")
    assert cmd.rc in (0, 2), cmd.stdout + cmd.stderr
    return json.loads(cmd.stdout)


def applied(run: Any) -> str:
    return run("SELECT string_agg(version, ',' ORDER BY version) FROM public.schema_migrations")


def test_back_to_before_a_release_by_its_restore_point(primary: Any, replica: Any) -> None:
    """A bad release undone: roll the lab back to 002, release 003 again (the runner makes
    the restore point mdus_before_002_<UTC>, named after the version it starts from),
    write with it, migrate forward again; a side restore to that point shows the database
    exactly as it was at 002."""
    everything = applied(lambda sql: psql(primary, sql, db="mdus_db"))
    try:
        migrate(primary, "rollback", "--target", "002")
        release = migrate(primary, "migrate", "--target", "003")
        point = release["restore_point"]["name"]
        assert point.startswith("mdus_before_002_"), release
        assert [step["version"] for step in release["applied"]] == ["003"], release
        psql(primary, "UPDATE users SET preferences = '{\"bad\": true}'", db="mdus_db")
    finally:
        migrate(primary, "migrate")
    assert applied(lambda sql: psql(primary, sql, db="mdus_db")) == everything
    archived_now(primary)
    try:
        result = pitr(pitr_restore_point=point)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        copy = "runuser -u postgres -- psql -X -Atq -h %s -p %s -d mdus_db -c %s"

        def on_copy(sql: str) -> str:
            cmd = replica.run(copy, PITR_DIR, PORT, sql)
            assert cmd.rc == 0, cmd.stderr
            return cmd.stdout.strip()

        assert applied(on_copy) == "001,002"
        column = "SELECT count(*) FROM information_schema.columns WHERE column_name = 'preferences'"
        assert on_copy(column) == "0"
    finally:
        pitr(pitr_remove=True)


def test_pitr_refusals_leave_nothing_behind(replica: Any) -> None:
    cases = [
        ({}, "Give exactly one recovery target"),
        ({"pitr_target_time": "2026-12-02 10:00:00"}, "needs a date, a time and a time"),
        ({"pitr_target_time": "2000-01-01 00:00:00+00"}, "must lie between the end of the oldest"),
        ({"pitr_target": "latest", "pitr_in_place": True}, "Confirm it with -e pitr_confirm=mdus"),
        (
            {"pitr_target": "latest", "pitr_in_place": True, "pitr_confirm": "main"},
            "Confirm it with -e pitr_confirm=mdus",
        ),
        ({"pitr_restore_point": "no_such_point"}, "restore point 'no_such_point' is not in"),
    ]
    for extra, message in cases:
        result = pitr(**extra)
        output = result.stdout + result.stderr
        assert result.returncode != 0, (extra, output[-2000:])
        assert message in output, (extra, output[-3000:])
        assert not replica.file(PITR_DIR).exists, extra


DATA = "/var/lib/postgresql/15/main"


def timeline(host: Any) -> int:
    return int(psql(host, "SELECT timeline_id FROM pg_control_checkpoint()"))


def streaming(replica: Any, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        status = psql(replica, "SELECT status FROM pg_stat_wal_receiver", check=False)
        if status == "streaming":
            return status
        time.sleep(2)
    return status


def aside_dirs(primary: Any) -> list[str]:
    found = primary.run("ls -d %s.before-pitr-* 2>/dev/null", DATA).stdout.split()
    return sorted(found)


def through_bouncer(sql: str) -> list[tuple[Any, ...]]:
    """A client's view: psycopg 3 through PgBouncer on the primary, verify-full."""
    with psycopg.connect(bouncer_dsn("mdus-lab-pg1")) as conn:
        return conn.execute(sql).fetchall()


def test_failed_in_place_recovery_leaves_the_cluster_as_it_was(primary: Any, replica: Any) -> None:
    psql(primary, "DROP TABLE IF EXISTS pitr_fail; CREATE TABLE pitr_fail (note text)")
    psql(primary, "INSERT INTO pitr_fail VALUES ('kept')")
    archived_now(primary)
    before = (timeline(primary), aside_dirs(primary))
    result = pitr(
        pitr_restore_point="no_such_point_in_place", pitr_in_place=True, pitr_confirm="mdus"
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert "The cluster is as it was" in output, output[-3000:]
    assert "restore point 'no_such_point_in_place' is not in" in output, output[-3000:]
    assert (timeline(primary), aside_dirs(primary)) == before
    assert psql(primary, "SELECT pg_is_in_recovery()") == "f"
    assert psql(primary, "SELECT string_agg(note, ',') FROM pitr_fail") == "kept"
    assert streaming(replica) == "streaming"
    assert through_bouncer("SELECT 1") == [(1,)]  # PgBouncer resumed


def test_in_place_recovery_takes_the_whole_cluster_back(
    primary: Any, replica: Any, repo: Any
) -> None:
    psql(primary, "DROP TABLE IF EXISTS pitr_inplace; DROP TABLE IF EXISTS pitr_inplace_gone")
    psql(
        primary, "CREATE TABLE pitr_inplace (note text); INSERT INTO pitr_inplace VALUES ('before')"
    )
    psql(
        primary, "CREATE TABLE pitr_inplace_gone (n int); INSERT INTO pitr_inplace_gone VALUES (7)"
    )
    time.sleep(1.1)
    moment = psql(primary, "SELECT to_char(now(), 'YYYY-MM-DD HH24:MI:SS.US+00')")
    time.sleep(1.1)
    psql(primary, "INSERT INTO pitr_inplace VALUES ('after'); DROP TABLE pitr_inplace_gone")
    archived_now(primary)
    old_timeline = timeline(primary)

    result = pitr(pitr_target_time=moment, pitr_in_place=True, pitr_confirm="mdus")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    flat = " ".join(output.split())
    assert f"recovered to time {moment}" in flat, output[-3000:]
    found = re.search(r"report (\S+/pitr-\d+\.json)", flat)
    assert found, output[-3000:]
    report = json.loads(Path(found.group(1)).read_text())
    for figure in ("restore_seconds", "replay_seconds", "writes_paused_seconds"):
        assert float(report["extra"][figure]) > 0, report

    # The primary is back at the moment, on a new timeline, writable.
    assert psql(primary, "SELECT string_agg(note, ',') FROM pitr_inplace") == "before"
    assert psql(primary, "SELECT n FROM pitr_inplace_gone") == "7"
    assert psql(primary, "SELECT pg_is_in_recovery()") == "f"
    assert timeline(primary) > old_timeline
    settings = "SELECT count(*) FROM pg_file_settings WHERE name LIKE 'recovery_target%'"
    assert psql(primary, settings) == "0"  # no target left for its next recovery
    assert len(aside_dirs(primary)) == 1  # the data before the recovery, kept

    # The replica was rebuilt and streams the new timeline; a write reaches it.
    assert streaming(replica) == "streaming"
    assert int(psql(replica, "SELECT received_tli FROM pg_stat_wal_receiver")) == timeline(primary)
    psql(primary, "INSERT INTO pitr_inplace VALUES ('new timeline')")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if "new timeline" in psql(replica, "SELECT string_agg(note, ',') FROM pitr_inplace"):
            break
        time.sleep(1)
    assert psql(replica, "SELECT string_agg(note, ',' ORDER BY note) FROM pitr_inplace") == (
        "before,new timeline"
    )

    # Clients get through PgBouncer, and the new timeline has a backup and archives.
    assert through_bouncer("SELECT count(*) FROM pg_stat_activity") != []
    newest = backups_in(info(repo), 1)[-1]
    assert newest["type"] == "full", newest
    assert int(newest["archive"]["start"][:8], 16) == timeline(primary), newest
    primary.run("rm -rf %s.before-pitr-*", DATA)
