#!/usr/bin/env python3
"""Turn `pgbackrest --output=json info` into node-exporter textfile metrics.

Usage: mdus-pgbackrest-metrics --output FILE [--user USER] -- pgbackrest [options]
Runs the command (as USER through runuser when given), converts its JSON and replaces
FILE atomically. When the command fails, only mdus_pgbackrest_up 0 is written, so the
freshness alerts keep working from the last good timestamps until they age out.
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BACKUP_TYPES = ("full", "diff", "incr")

HELP = {
    "mdus_pgbackrest_up": "1 if pgbackrest info ran and returned JSON",
    "mdus_pgbackrest_collect_timestamp_seconds": "Unix time these metrics were collected",
    "mdus_pgbackrest_stanza_status": "pgBackRest stanza status code (0 ok, 1 missing stanza"
    " path, 2 no valid backups, 3 missing stanza data, 4 cipher mismatch, 5 database"
    " mismatch, 6 backup/expire running, 99 other)",
    "mdus_pgbackrest_backups": "Backups in the repository",
    "mdus_pgbackrest_last_backup_timestamp_seconds": "Unix time the newest backup of a type"
    " finished (type any: of every type)",
    "mdus_pgbackrest_last_backup_age_seconds": "Seconds since the newest backup of a type"
    " finished, at collection time",
    "mdus_pgbackrest_last_backup_duration_seconds": "How long the newest backup of a type took",
    "mdus_pgbackrest_last_backup_size_bytes": "Database size of the newest backup of a type",
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _sample(name: str, labels: dict[str, str], value: float) -> str:
    inner = ",".join(f'{key}="{_escape(val)}"' for key, val in sorted(labels.items()))
    text = f"{value:.0f}" if float(value).is_integer() else repr(float(value))
    return f"{name}{{{inner}}} {text}" if inner else f"{name} {text}"


def metrics_from_info(info: list[dict[str, Any]] | None, now: float) -> str:
    """Exposition text for the parsed JSON of `pgbackrest info` (None: the command failed)."""
    samples: dict[str, list[str]] = {name: [] for name in HELP}
    samples["mdus_pgbackrest_up"].append(
        _sample("mdus_pgbackrest_up", {}, 0 if info is None else 1)
    )
    samples["mdus_pgbackrest_collect_timestamp_seconds"].append(
        _sample("mdus_pgbackrest_collect_timestamp_seconds", {}, int(now))
    )
    for stanza in info or []:
        name = str(stanza.get("name", ""))
        code = int(stanza.get("status", {}).get("code", 99))
        samples["mdus_pgbackrest_stanza_status"].append(
            _sample("mdus_pgbackrest_stanza_status", {"stanza": name}, code)
        )
        backups = [b for b in stanza.get("backup", []) if b.get("timestamp", {}).get("stop")]
        samples["mdus_pgbackrest_backups"].append(
            _sample("mdus_pgbackrest_backups", {"stanza": name}, len(backups))
        )
        for kind in (*BACKUP_TYPES, "any"):
            chosen = [b for b in backups if kind == "any" or b.get("type") == kind]
            if not chosen:
                continue
            newest = max(chosen, key=lambda b: int(b["timestamp"]["stop"]))
            stop = int(newest["timestamp"]["stop"])
            start = int(newest["timestamp"].get("start", stop))
            labels = {"stanza": name, "type": kind}
            values = {
                "mdus_pgbackrest_last_backup_timestamp_seconds": stop,
                "mdus_pgbackrest_last_backup_age_seconds": max(0, int(now) - stop),
                "mdus_pgbackrest_last_backup_duration_seconds": max(0, stop - start),
                "mdus_pgbackrest_last_backup_size_bytes": int(
                    newest.get("info", {}).get("size", 0)
                ),
            }
            for metric, value in values.items():
                samples[metric].append(_sample(metric, labels, value))
    lines: list[str] = []
    for name, rows in samples.items():
        if rows:
            lines += [f"# HELP {name} {HELP[name]}", f"# TYPE {name} gauge", *rows]
    return "\n".join(lines) + "\n"


def run_info(command: list[str], user: str | None) -> list[dict[str, Any]] | None:
    argv = [*command, "--output=json", "info"]
    if user:
        argv = ["runuser", "-u", user, "--", *argv]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"pgbackrest info failed: {exc}", file=sys.stderr)
        return None
    if proc.returncode != 0:
        print(f"pgbackrest info exited {proc.returncode}: {proc.stderr.strip()}", file=sys.stderr)
        return None
    try:
        parsed = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        print(f"pgbackrest info returned no JSON: {exc}", file=sys.stderr)
        return None
    return parsed if isinstance(parsed, list) else None


def write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".pgbackrest.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, required=True, help="textfile (.prom) to write")
    parser.add_argument("--user", default=None, help="run pgbackrest as this OS user")
    parser.add_argument("command", nargs="+", help="pgbackrest command line")
    args = parser.parse_args(argv)
    info = run_info(args.command, args.user)
    write_atomically(args.output, metrics_from_info(info, time.time()))
    return 0 if info is not None else 1


if __name__ == "__main__":
    sys.exit(main())
