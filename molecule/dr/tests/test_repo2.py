"""repo2 on a second repository host (another site): the primary archives into both
repositories; with repo1's host stopped, WAL still reaches repo2 (late) and
playbooks/pitr.yml restores from repo2 alone, with the rows written before and during the
outage; when repo1's host is back, archiving reaches both again. Runs after the drills,
on whichever host is primary by then."""

from __future__ import annotations

import json
import subprocess
import time

from tests.integration.pglab import (
    REPO2_PATH,
    molecule_playbook,
    node,
    pgbackrest,
    psql,
    segment_in_repo,
)

DB_HOSTS = ("mdus-dr-pg1", "mdus-dr-pg2", "mdus-dr-pg3")
REPO, REPO2 = "mdus-dr-repo", "mdus-dr-repo2"
PITR_DIR, PITR_PORT = "/var/lib/postgresql/mdus-pitr", "5499"
testinfra_hosts = [DB_HOSTS[0]]


def docker(*args: str) -> None:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def repo_keys(name: str) -> set[int]:
    """The repositories a repository host answers for in `pgbackrest info`."""
    cmd = pgbackrest(node(name), "--output=json", "info")
    assert cmd.rc == 0, cmd.stderr
    return {repo["key"] for repo in json.loads(cmd.stdout)[0]["repo"]}


def test_each_repository_host_holds_its_own_repository() -> None:
    assert repo_keys(REPO) == {1}
    assert repo_keys(REPO2) == {2}
    assert node(REPO2).service("pgbackrest-mdus-backup-full.timer").is_running
    script = "/usr/local/sbin/mdus-pgbackrest-backup"
    assert "for repo in 2; do" in node(REPO2).file(script).content_string
    assert "for repo in 1; do" in node(REPO).file(script).content_string


def test_the_two_hosts_backups_take_turns() -> None:
    """Both repository hosts start a full backup at once (as their timers would):
    pgBackRest runs one backup of the stanza at a time on the primary, so one waits for
    the other (mdus-pgbackrest-backup retries on LockAcquireError) instead of failing."""
    unit = "pgbackrest-mdus-backup@full.service"
    for name in (REPO, REPO2):
        assert node(name).run("systemctl start --no-block %s", unit).rc == 0
    deadline = time.monotonic() + 300
    states: list[str] = []
    while time.monotonic() < deadline:
        states = [
            node(name).run("systemctl is-active %s", unit).stdout.strip() for name in (REPO, REPO2)
        ]
        if not {"active", "activating"} & set(states):
            break
        time.sleep(2)
    assert states == ["inactive", "inactive"], states  # both done, neither failed
    journals = "".join(node(name).run("journalctl -u %s", unit).stdout for name in (REPO, REPO2))
    assert "retrying in" in journals, "the backups did not overlap: nothing shows one waited"


def test_repo2_alone_restores_while_repo1s_host_is_stopped() -> None:
    primary = next(h for h in DB_HOSTS if psql(node(h), "SELECT pg_is_in_recovery()") == "f")
    side_host = next(h for h in DB_HOSTS if h != primary)
    psql(node(primary), "DROP TABLE IF EXISTS repo2_marker", db="mdus_drill")
    psql(node(primary), "CREATE TABLE repo2_marker (note text)", db="mdus_drill")
    psql(node(primary), "INSERT INTO repo2_marker VALUES ('in both sites')", db="mdus_drill")
    # check switches WAL and waits until the segment is archived in every repository
    checked = pgbackrest(node(primary), "check")
    assert checked.rc == 0, checked.stderr

    docker("stop", REPO)
    try:
        # WAL written during the outage still reaches repo2, late: each archive-push batch
        # first waits for the connection to repo1's host to fail (the TCP connect timeout,
        # ~130 s here); PostgreSQL is told of the failure and keeps the segment for repo1.
        clock = time.monotonic()
        failed = int(psql(node(primary), "SELECT failed_count FROM pg_stat_archiver"))
        psql(node(primary), "INSERT INTO repo2_marker VALUES ('during')", db="mdus_drill")
        during = psql(node(primary), "SELECT pg_walfile_name(pg_switch_wal())")
        while not segment_in_repo(node(REPO2), during, REPO2_PATH):
            assert time.monotonic() - clock < 300, f"{during} did not reach repo2 in 300 s"
            time.sleep(2)
        print(f"repo2 received WAL {time.monotonic() - clock:.0f} s after the switch")
        assert int(psql(node(primary), "SELECT failed_count FROM pg_stat_archiver")) > failed, (
            "archiving did not report repo1's host as failing"
        )
        clock = time.monotonic()
        result = molecule_playbook(
            "playbooks/pitr.yml", {"pitr_target": "latest", "pitr_repo": 2, "pitr_host": side_host}
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-3000:]
        print(
            f"side restore from repo2 with repo1's host stopped: {time.monotonic() - clock:.1f} s"
        )
        rows = node(side_host).run(
            "runuser -u postgres -- psql -X -Atq -h %s -p %s -d mdus_drill -c %s",
            PITR_DIR,
            PITR_PORT,
            "SELECT string_agg(note, ',' ORDER BY note) FROM repo2_marker",
        )
        assert rows.rc == 0, rows.stderr
        assert rows.stdout.strip() == "during,in both sites"
    finally:
        removed = molecule_playbook(
            "playbooks/pitr.yml", {"pitr_remove": True, "pitr_host": side_host}
        )
        docker("start", REPO)
    assert removed.returncode == 0, (removed.stdout + removed.stderr)[-3000:]

    # repo1's host is back: the WAL written meanwhile reaches it, archiving to both again
    deadline = time.monotonic() + 120
    while (checked := pgbackrest(node(primary), "check")).rc != 0 and time.monotonic() < deadline:
        time.sleep(3)
    assert checked.rc == 0, checked.stderr
    assert segment_in_repo(node(REPO), during), f"{during}, written during the outage, not in repo1"
