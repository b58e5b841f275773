#!/usr/bin/python3
# Managed in the MDUS platform repository: roles/pgbackrest/files/mdus_restore_check.py
"""Prove the newest backup of every repository restores into a working database.

Run by mdus-restore-check.service (timer, default daily) on one database host. For each
repository, one at a time: refuse when the disk cannot hold a copy; restore the newest
backup into a scratch directory with archiving off; start it on its own port (unix
socket only) and let it recover to consistency and promote; check every B-tree index of
the MDUS database with amcheck (bt_index_check, heapallindexed); compare the row counts of
key tables with the running server within a tolerance; check the copy holds the newest
audit row written before the backup started; remove the copy. Results go to a
node-exporter textfile (success, last success, duration, per repository). Exit 1 when a
repository failed. Python standard library only (runs with the host's python3).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

METRIC = "mdus_restore_check"
SLACK_SECONDS = 60  # audit rows this close to the backup start may or may not be in it


class CheckFailed(Exception):
    """A check found the copy wrong; the message names what and the fix."""


@dataclass
class Result:
    repo: int
    success: bool = False
    error: str = ""
    label: str = ""
    backup_start: float = 0.0
    indexes: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def run(argv: list[str], timeout: float, what: str = "") -> str:
    """Run as the PostgreSQL OS user; stdout, or CheckFailed with the tool's own words."""
    proc = subprocess.run(
        ["runuser", "-u", "postgres", "--", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        words = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise CheckFailed(
            f"{what or Path(argv[0]).name + ' ' + argv[-1]} failed: {' '.join(words)}"
        )
    return proc.stdout


def sql(args: argparse.Namespace, query: str, *, scratch: bool, db: str | None = None) -> str:
    host, port = (str(args.dir), args.port) if scratch else (args.live_socket, args.live_port)
    cmd = [f"{args.bin}/psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", str(port)]
    where = "the restored copy" if scratch else "the running server"
    what = f"'{query[:48]}...' on {where}" if len(query) > 48 else f"'{query}' on {where}"
    return run([*cmd, "-d", db or args.database, "-c", query], args.timeout, what).strip()


def control_limits(args: argparse.Namespace, data: Path) -> dict[str, str]:
    """The restored cluster's limits from pg_control (the copy needs at least these)."""
    out = run([f"{args.bin}/pg_controldata", str(data)], 60)
    names = {
        "max_connections setting": "max_connections",
        "max_worker_processes setting": "max_worker_processes",
        "max_wal_senders setting": "max_wal_senders",
        "max_prepared_xacts setting": "max_prepared_transactions",
        "max_locks_per_xact setting": "max_locks_per_transaction",
    }
    limits = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in names:
            limits[names[key.strip()]] = value.strip()
    return limits


def write_config(args: argparse.Namespace, data: Path) -> None:
    settings = {
        "port": str(args.port),
        "listen_addresses": "''",
        "unix_socket_directories": f"'{args.dir}'",
        "shared_buffers": "'128MB'",
        "archive_mode": "off",
        "max_wal_size": "'1GB'",
        "hba_file": f"'{data}/pg_hba.conf'",
        "ident_file": f"'{data}/pg_ident.conf'",
        "logging_collector": "off",
        "timezone": "'UTC'",
        # The running server's libraries: pgaudit's event triggers refuse DDL without it.
        "shared_preload_libraries": "'{}'".format(
            sql(args, "SHOW shared_preload_libraries", scratch=False, db="postgres")
        ),
        **control_limits(args, data),
    }
    (data / "postgresql.conf").write_text(
        "# mdus-restore-check: a throw-away copy, socket only, archiving off\n"
        + "".join(f"{k} = {v}\n" for k, v in settings.items())
    )
    (data / "pg_hba.conf").write_text("local all postgres peer\n")
    (data / "pg_ident.conf").write_text("")
    for name in ("postgresql.conf", "pg_hba.conf", "pg_ident.conf"):
        shutil.chown(data / name, "postgres", "postgres")


def free_space_check(args: argparse.Namespace) -> None:
    """Refuse before restoring when the copy (about the live data directory) cannot fit."""
    du = subprocess.run(["du", "-sb", args.live_data], capture_output=True, text=True, check=True)
    need = int(du.stdout.split()[0]) * args.space_factor
    free = shutil.disk_usage(args.dir.parent).free
    if free < need:
        raise CheckFailed(
            f"not enough space under {args.dir.parent}: {free // 2**20} MB free, the copy needs"
            f" about {int(need) // 2**20} MB ({args.space_factor}x {args.live_data}); free space"
            " or set pgbackrest_restore_check_dir to a larger file system"
        )


def backup_start(data: Path) -> float:
    label = (data / "backup_label").read_text()
    found = re.search(r"^START TIME: (.+)$", label, re.M)
    if not found:
        raise CheckFailed(f"no START TIME in {data}/backup_label: not a pgBackRest backup?")
    start = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S %Z").replace(tzinfo=UTC)
    return start.timestamp()


def wait_promoted(args: argparse.Namespace) -> None:
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        try:
            if sql(args, "SELECT pg_is_in_recovery()", scratch=True, db="postgres") == "f":
                return
        except CheckFailed:
            pass
        time.sleep(2)
    raise CheckFailed(f"the copy did not reach consistency within {args.timeout} s")


def check_copy(args: argparse.Namespace, result: Result) -> None:
    indexes = sql(
        args,
        "CREATE EXTENSION IF NOT EXISTS amcheck;"
        " SELECT count(bt_index_check(c.oid, true)) FROM pg_index i"
        " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE am.amname = 'btree' AND c.relkind = 'i' AND i.indisvalid AND i.indisready"
        " AND c.relpersistence <> 't' AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
        scratch=True,
    )
    result.indexes = int(indexes.splitlines()[-1])
    for table in args.tables:
        query = f"SELECT count(*) FROM {table}"
        copy, live = (int(sql(args, query, scratch=s)) for s in (True, False))
        allowed = max(args.tolerance * live, args.min_rows)
        if abs(live - copy) > allowed:
            raise CheckFailed(
                f"{table}: {copy} rows in the restored copy, {live} on the running server"
                f" (more than {args.tolerance:.0%} apart): a stale or incomplete backup"
            )
    cutoff = result.backup_start - SLACK_SECONDS
    newest = (
        "SELECT coalesce(extract(epoch FROM max(created_at)), 0) FROM audit_logs"
        f" WHERE created_at < to_timestamp({cutoff})"
    )
    copy_ts, live_ts = (float(sql(args, newest, scratch=s)) for s in (True, False))
    if copy_ts < live_ts:
        live_at = datetime.fromtimestamp(live_ts, UTC).isoformat()
        copy_at = datetime.fromtimestamp(copy_ts, UTC).isoformat() if copy_ts else "none"
        raise CheckFailed(
            "the newest audit row before the backup started is missing from the copy"
            f" ({live_at} on the running server, {copy_at} in the copy)"
        )


def stop_and_remove(args: argparse.Namespace) -> None:
    data = args.dir / "data"
    if (data / "postmaster.pid").exists():
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                f"{args.bin}/pg_ctl",
                "-D",
                str(data),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
    shutil.rmtree(args.dir, ignore_errors=True)


def check_repo(args: argparse.Namespace, repo: int) -> Result:
    result, data = Result(repo), args.dir / "data"
    started = time.monotonic()
    try:
        stop_and_remove(args)  # leftovers of an interrupted run
        free_space_check(args)
        args.dir.mkdir(mode=0o700, parents=True)
        shutil.chown(args.dir, "postgres", "postgres")
        t0 = time.monotonic()
        log = run(
            [
                "pgbackrest",
                f"--stanza={args.stanza}",
                f"--repo={repo}",
                f"--pg1-path={data}",
                "--archive-mode=off",
                "--type=immediate",
                "--target-action=promote",
                "--log-level-console=info",
                "restore",
            ],
            args.timeout,
        )
        result.seconds["restore"] = time.monotonic() - t0
        found = re.search(r"restore backup set (\S+)", log)
        result.label = found.group(1).rstrip(",") if found else ""
        result.backup_start = backup_start(data)
        write_config(args, data)
        t0 = time.monotonic()
        run(
            [
                f"{args.bin}/pg_ctl",
                "-D",
                str(data),
                "-l",
                str(args.dir / "server.log"),
                "-w",
                "-t",
                str(args.timeout),
                "start",
            ],
            args.timeout + 30,
        )
        wait_promoted(args)
        result.seconds["recovery"] = time.monotonic() - t0
        t0 = time.monotonic()
        check_copy(args, result)
        result.seconds["checks"] = time.monotonic() - t0
        result.success = True
    except (CheckFailed, subprocess.TimeoutExpired, OSError) as exc:
        result.error = str(exc)
    finally:
        stop_and_remove(args)
        result.seconds["total"] = time.monotonic() - started
    return result


def previous_success(path: Path) -> dict[int, float]:
    """Last success per repository from the previous textfile (kept across failures)."""
    found: dict[int, float] = {}
    if path.exists():
        pattern = rf'^{METRIC}_last_success_timestamp_seconds{{repo="(\d+)"}} (\S+)$'
        for repo, value in re.findall(pattern, path.read_text(), re.M):
            found[int(repo)] = float(value)
    return found


def metrics(results: list[Result], before: dict[int, float], now: float) -> str:
    lines = [
        f"# HELP {METRIC}_success 1 if the newest backup of the repository restored and passed.",
        f"# TYPE {METRIC}_success gauge",
    ]
    lines += [f'{METRIC}_success{{repo="{r.repo}"}} {int(r.success)}' for r in results]
    lines += [f"# TYPE {METRIC}_last_run_timestamp_seconds gauge"]
    lines += [f'{METRIC}_last_run_timestamp_seconds{{repo="{r.repo}"}} {now:.0f}' for r in results]
    lines += [f"# TYPE {METRIC}_last_success_timestamp_seconds gauge"]
    for r in results:
        last = now if r.success else before.get(r.repo, 0.0)
        lines.append(f'{METRIC}_last_success_timestamp_seconds{{repo="{r.repo}"}} {last:.0f}')
    lines += [f"# TYPE {METRIC}_duration_seconds gauge"]
    for r in results:
        lines += [
            f'{METRIC}_duration_seconds{{repo="{r.repo}",phase="{phase}"}} {secs:.1f}'
            for phase, secs in r.seconds.items()
        ]
    lines += [f"# TYPE {METRIC}_indexes_checked gauge"]
    lines += [f'{METRIC}_indexes_checked{{repo="{r.repo}"}} {r.indexes}' for r in results]
    lines += [f"# TYPE {METRIC}_backup_start_timestamp_seconds gauge"]
    lines += [
        f'{METRIC}_backup_start_timestamp_seconds{{repo="{r.repo}",label="{r.label}"}}'
        f" {r.backup_start:.0f}"
        for r in results
    ]
    return "\n".join(lines) + "\n"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--stanza", required=True)
    p.add_argument("--repos", type=int, nargs="+", required=True)
    p.add_argument("--dir", type=Path, required=True, help="scratch directory (removed)")
    p.add_argument("--port", type=int, default=5498)
    p.add_argument("--bin", default="/usr/lib/postgresql/15/bin")
    p.add_argument("--database", default="mdus_db")
    p.add_argument("--tables", nargs="+", default=["documents", "audit_logs"])
    p.add_argument("--tolerance", type=float, default=0.1)
    p.add_argument("--min-rows", type=int, default=1000, help="absolute tolerance floor")
    p.add_argument("--live-data", default="/var/lib/postgresql/15/main")
    p.add_argument("--live-socket", default="/var/run/postgresql")
    p.add_argument("--live-port", type=int, default=5432)
    p.add_argument("--space-factor", type=float, default=1.2)
    p.add_argument("--timeout", type=int, default=3600, help="seconds per step")
    p.add_argument("--textfile", type=Path, required=True)
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    with open("/run/lock/mdus-restore-check.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("another restore check is running; not starting a second one")
            return 0
        before = previous_success(args.textfile)
        results = [check_repo(args, repo) for repo in args.repos]
    tmp = args.textfile.with_suffix(".tmp")
    tmp.write_text(metrics(results, before, time.time()))
    tmp.chmod(0o644)
    os.replace(tmp, args.textfile)
    for r in results:
        print(
            json.dumps(
                {
                    "repo": r.repo,
                    "success": r.success,
                    "label": r.label,
                    "indexes_checked": r.indexes,
                    "error": r.error,
                    "seconds": {k: round(v, 1) for k, v in r.seconds.items()},
                }
            )
        )
    return 0 if all(r.success for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
