#!/usr/bin/python3
"""Start guard of a PostgreSQL cluster (systemd ExecStartPre, runs as root).

A cluster about to start as a primary (no standby.signal) asks every other database host
for its timeline over the replication protocol (IDENTIFY_SYSTEM). When one of them, of
the same cluster, is on a newer timeline, it was promoted while this host was away:
this host writes standby.signal and a marker, and PostgreSQL starts as a standby that
takes no writes, until playbooks/rejoin.yml makes it a replica again. A peer that does
not answer is skipped (a whole-site restart must not be blocked); the guard never stops
the start on its own errors, it logs them.

Arguments (rendered into the systemd drop-in by the postgresql role): --data-dir,
--bin-dir, --marker, --user, --passfile, --sslrootcert, --timeout and one --peer HOST:PORT
per other database host.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def log(message: str) -> None:
    print(f"mdus start guard: {message}", file=sys.stderr, flush=True)


def local_identity(bin_dir: str, data_dir: str) -> tuple[str, int]:
    out = subprocess.run(
        [f"{bin_dir}/pg_controldata", data_dir],
        capture_output=True,
        text=True,
        env={**os.environ, "LC_ALL": "C"},
        check=True,
        timeout=30,
    ).stdout
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return (
        fields["Database system identifier"].strip(),
        int(fields["Latest checkpoint's TimeLineID"].strip()),
    )


def peer_identity(conf: dict[str, Any], peer: dict[str, Any]) -> tuple[str, int] | None:
    dsn = (
        f"host={peer['host']} port={peer['port']} user={conf['user']} "
        f"passfile={conf['passfile']} sslmode=verify-full sslrootcert={conf['sslrootcert']} "
        f"connect_timeout={conf['timeout']} replication=true dbname=replication "
        "application_name=mdus-start-guard"
    )
    try:
        out = subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                f"{conf['bin_dir']}/psql",
                "-XAtq",
                "-F",
                " ",
                dsn,
                "-c",
                "IDENTIFY_SYSTEM",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=conf["timeout"] + 5,
        )
    except subprocess.TimeoutExpired:
        return None
    if out.returncode != 0 or not out.stdout.strip():
        log(f"{peer['host']} did not answer ({out.stderr.strip()[:200]}); skipped")
        return None
    sysid, timeline = out.stdout.split()[:2]
    return sysid, int(timeline)


def fence(conf: dict[str, Any], data_dir: Path, why: dict[str, Any]) -> None:
    postgres = pwd.getpwnam("postgres")
    signal = data_dir / "standby.signal"
    signal.write_text("")
    os.chown(signal, postgres.pw_uid, postgres.pw_gid)
    signal.chmod(0o600)
    marker = Path(conf["marker"])
    marker.write_text(json.dumps({**why, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}))
    os.chown(marker, postgres.pw_uid, postgres.pw_gid)
    log(
        f"{why['peer']} is on timeline {why['peer_timeline']}, this host on "
        f"{why['timeline']}: starting as a standby (fenced). Run playbooks/rejoin.yml."
    )


def arguments() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--bin-dir", required=True)
    parser.add_argument("--marker", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--passfile", required=True)
    parser.add_argument("--sslrootcert", required=True)
    parser.add_argument("--timeout", type=int, default=3)
    parser.add_argument("--peer", action="append", default=[], help="HOST:PORT")
    args = vars(parser.parse_args())
    args["peers"] = [
        {"host": p.rpartition(":")[0], "port": int(p.rpartition(":")[2])} for p in args["peer"]
    ]
    return args


def main() -> int:
    conf = arguments()
    data_dir = Path(conf["data_dir"])
    if not (data_dir / "PG_VERSION").is_file() or (data_dir / "standby.signal").exists():
        return 0
    try:
        sysid, timeline = local_identity(conf["bin_dir"], str(data_dir))
        for peer in conf["peers"]:
            found = peer_identity(conf, peer)
            if found and found[0] == sysid and found[1] > timeline:
                fence(
                    conf,
                    data_dir,
                    {"peer": peer["host"], "peer_timeline": found[1], "timeline": timeline},
                )
                return 0
    except Exception as exc:  # the guard must never keep a healthy primary down
        log(f"check failed, starting normally: {exc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
