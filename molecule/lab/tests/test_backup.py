"""pgBackRest over TLS: stanza, archiving into both repositories, backups, verify,
encryption, restore with WAL replay into a scratch cluster, the replica bootstrapped from
the repository."""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any

from backup_helpers import (
    REPLICA,
    REPO,
    REPO_PATHS,
    archiver,
    backups_in,
    info,
    switch_wal,
    wait_archived,
)

from tests.integration.pglab import STANZA, pgbackrest, psql, segment_in_repo

# Marker rows: one committed before the full backup, one after it (reaches a restore only
# through WAL replay, archive-get). Random, so finding them anywhere is meaningful.
BEFORE = f"mdus-marker-before-{secrets.token_hex(8)}"
AFTER = f"mdus-marker-after-{secrets.token_hex(8)}"
STATE: dict[str, str] = {}


def test_tls_servers_run_on_every_host(primary: Any, replica: Any, repo: Any) -> None:
    for host in (primary, replica, repo):
        assert host.service("pgbackrest.service").is_running
        assert host.socket("tcp://0.0.0.0:8432").is_listening


def test_stanza_exists_encrypted(repo: Any) -> None:
    stanza = info(repo)
    assert stanza["name"] == STANZA
    assert stanza["status"]["code"] == 0, stanza["status"]
    assert stanza["cipher"] == "aes-256-cbc"
    # repo1 and repo2, both readable and encrypted, each with the first full backup
    assert [(r["key"], r["cipher"], r["status"]["code"]) for r in stanza["repo"]] == [
        (1, "aes-256-cbc", 0),
        (2, "aes-256-cbc", 0),
    ], stanza["repo"]
    for key in (1, 2):
        assert [b["type"] for b in backups_in(stanza, key)][:1] == ["full"], stanza["backup"]


def test_check_passes_from_primary_and_repository(primary: Any, repo: Any) -> None:
    for host in (primary, repo):
        cmd = pgbackrest(host, "check")
        assert cmd.rc == 0, f"{host}: {cmd.stderr}"


def test_tls_server_refuses_other_stanza(primary: Any) -> None:
    # the repository host authorises the database hosts for stanza mdus only
    cmd = primary.run("runuser -u postgres -- pgbackrest --stanza=other --output=json info")
    status = json.loads(cmd.stdout)[0]["repo"][0]["status"]
    assert status["code"] == 99 and "access denied" in status["message"], status


def test_tls_server_refuses_unlisted_client(repo: Any) -> None:
    # The repository host's own pgBackRest certificate (CN pgbackrest@mdus-lab-repo) is not
    # in its tls-server-auth: a client presenting it is refused.
    pki = "/etc/mdus-pki"
    cmd = pgbackrest(
        repo,
        f"--repo1-host={REPO}",
        "--repo1-host-type=tls",
        f"--repo1-host-ca-file={pki}/ca.crt",
        f"--repo1-host-cert-file={pki}/pgbackrest.crt",
        f"--repo1-host-key-file={pki}/pgbackrest.key",
        "--output=json",
        "info",
    )
    # repo1 goes through the TLS server and is refused; repo2 is read locally as usual
    repo1 = next(r for r in json.loads(cmd.stdout)[0]["repo"] if r["key"] == 1)
    assert repo1["status"]["code"] == 99, repo1
    assert "access denied" in repo1["status"]["message"], repo1


def test_switched_wal_is_archived_without_failures(primary: Any, repo: Any) -> None:
    failed_before = archiver(primary)[1]
    segment = switch_wal(primary)
    wait_archived(primary, segment)
    assert archiver(primary)[1] == failed_before
    for path in REPO_PATHS:
        assert segment_in_repo(repo, segment, path), f"{segment} is not in {path}/archive"


def test_full_backup_completes_and_is_listed(primary: Any, repo: Any) -> None:
    psql(primary, "CREATE TABLE IF NOT EXISTS verify_backup_marker (marker text)")
    psql(primary, f"INSERT INTO verify_backup_marker VALUES ('{BEFORE}')")
    before = {b["label"] for b in info(repo)["backup"]}
    cmd = pgbackrest(repo, "--type=full", "backup")
    assert cmd.rc == 0, cmd.stderr
    new = [b for b in info(repo)["backup"] if b["label"] not in before]
    assert len(new) == 1 and new[0]["type"] == "full", new
    assert new[0]["error"] is False
    STATE["full"] = new[0]["label"]
    # after the backup: only WAL replay can bring this row into a restore of it
    psql(primary, f"INSERT INTO verify_backup_marker VALUES ('{AFTER}')")
    wait_archived(primary, switch_wal(primary))


def test_verify_is_clean(repo: Any) -> None:
    for key in (1, 2):
        cmd = pgbackrest(repo, f"--repo={key}", "--log-level-console=info", "verify")
        assert cmd.rc == 0, cmd.stdout + cmd.stderr
        assert not re.search(r"(missing|invalid|other): [1-9]", cmd.stdout), cmd.stdout


def test_scheduled_incremental_backup_unit(repo: Any) -> None:
    for kind in ("full", "diff", "incr"):
        assert repo.service(f"pgbackrest-{STANZA}-backup-{kind}.timer").is_running
    before = info(repo)
    cmd = repo.run(f"systemctl start pgbackrest-{STANZA}-backup@incr.service")
    assert cmd.rc == 0, cmd.stderr
    after = info(repo)
    # one incremental backup in each repository
    for key in (1, 2):
        new = backups_in(after, key)[len(backups_in(before, key)) :]
        assert [b["type"] for b in new] == ["incr"], new


def test_repository_is_encrypted(repo: Any) -> None:
    paths = " ".join(REPO_PATHS)
    found = repo.run(f"grep -rlF -e {BEFORE} -e {AFTER} {paths}")
    assert found.rc == 1 and found.stdout == "", f"marker in clear text: {found.stdout}"
    # every non-empty file of both repositories carries OpenSSL's encryption header
    plain = repo.run(
        f"find {paths} -type f -size +0 -print0 | "
        'xargs -0 -I{} sh -c \'[ "$(head -c 8 "$1")" = Salted__ ] || echo "$1"\' _ {}'
    )
    assert plain.rc == 0 and plain.stdout.strip() == "", f"not encrypted: {plain.stdout}"


def test_replica_was_restored_by_pgbackrest_and_streams(primary: Any, replica: Any) -> None:
    log = replica.file(f"/var/log/pgbackrest/{STANZA}-restore.log").content_string
    assert "--type=standby" in log and "restore command end: completed successfully" in log
    state = psql(
        primary,
        f"SELECT state FROM pg_stat_replication WHERE application_name = '{REPLICA}'",
    )
    assert state == "streaming"
    assert psql(replica, "SELECT status FROM pg_stat_wal_receiver") == "streaming"
    marker = secrets.token_hex(8)
    psql(primary, f"INSERT INTO verify_backup_marker VALUES ('{marker}')")
    deadline = time.monotonic() + 10
    while (
        psql(replica, f"SELECT count(*) FROM verify_backup_marker WHERE marker = '{marker}'") != "1"
    ):
        assert time.monotonic() < deadline, "the row did not reach the replica within 10 s"
        time.sleep(0.2)
