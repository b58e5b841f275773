#!/usr/bin/python3
"""PgBouncer console steps of a change of primary, bounded in time (run as root or postgres).

  mdus-bouncer-ctl pause --server HOST [--timeout S]
      PAUSE every transaction- or statement-pooled database that points at HOST (clients
      wait, nothing fails) and KILL every session-pooled one (their server sessions end
      with the old primary anyway; new clients wait for RESUME). Exit 3 when PAUSE does
      not finish within the timeout: everything is RESUMEd and the server connections
      still busy are printed.
  mdus-bouncer-ctl resume [--reload]
      RESUME every paused database; with --reload, RELOAD the configuration first (in
      one step: the new targets are read before the first query is let through).
  mdus-bouncer-ctl show
      The databases as JSON (name, host, pool_mode, paused).

Prints one JSON line; exit 0 with "changed" true or false, 1 on errors, 3 on a timeout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

INI = "/etc/pgbouncer/pgbouncer.ini"


def ini_setting(name: str, default: str, path: str = INI) -> str:
    """A [pgbouncer] setting of PgBouncer's own configuration (readable by root), so the
    socket and port are the ones PgBouncer uses; the default when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as ini:
            text = ini.read()
    except OSError:
        return default
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
        elif section == "pgbouncer" and "=" in line and not line.startswith((";", "#")):
            key, _, value = line.partition("=")
            if key.strip() == name:
                return value.strip()
    return default


PORT = os.environ.get("MDUS_BOUNCER_PORT") or ini_setting("listen_port", "6432")
SOCKET = os.environ.get("MDUS_BOUNCER_SOCKET") or ini_setting("unix_socket_dir", "/run/pgbouncer")


def console(command: str, timeout: float = 10) -> list[dict[str, str]]:
    """Run one admin-console command as the OS user postgres (peer); rows as dicts."""
    argv = [
        "psql",
        "-X",
        "-q",
        "--csv",
        "-h",
        SOCKET,
        "-p",
        PORT,
        "-U",
        "postgres",
        "-d",
        "pgbouncer",
        "-c",
        command,
    ]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "postgres", "--", *argv]
    # The admin console takes no startup options (PGOPTIONS would make it refuse us).
    env = {k: v for k, v in os.environ.items() if k != "PGOPTIONS"}
    out = subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=timeout, env=env
    )
    if out.returncode != 0:
        raise RuntimeError(f"{command}: {out.stderr.strip()}")
    lines = out.stdout.splitlines()
    if not lines:
        return []
    header = lines[0].split(",")
    return [dict(zip(header, line.split(","), strict=False)) for line in lines[1:]]


def databases() -> list[dict[str, Any]]:
    return [
        {
            "name": d["name"],
            "host": d["host"],
            "pool_mode": d.get("pool_mode") or "",
            "paused": d.get("paused") == "1",
        }
        for d in console("SHOW DATABASES")
        if d["name"] != "pgbouncer"
    ]


def resume() -> list[str]:
    resumed = []
    for db in databases():
        if db["paused"]:
            console(f'RESUME "{db["name"]}"')
            resumed.append(db["name"])
    return resumed


def pause(server: str, timeout: float) -> dict[str, Any]:
    paused, killed = [], []
    for db in databases():
        if db["host"] != server:
            continue
        if db["pool_mode"] == "session":
            console(f'KILL "{db["name"]}"')
            killed.append(db["name"])
            continue
        try:
            console(f'PAUSE "{db["name"]}"', timeout=timeout)
        except subprocess.TimeoutExpired:
            busy = [s for s in console("SHOW SERVERS") if s.get("state") == "active"]
            resume()
            return {"changed": True, "timeout": True, "database": db["name"], "busy": busy}
        paused.append(db["name"])
    return {"changed": bool(paused or killed), "paused": paused, "killed": killed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pause")
    p.add_argument("--server", required=True, help="host of the databases to pause")
    p.add_argument("--timeout", type=float, default=10)
    r = sub.add_parser("resume")
    r.add_argument("--reload", action="store_true", help="RELOAD the configuration first")
    sub.add_parser("show")
    args = parser.parse_args()
    try:
        if args.command == "pause":
            result = pause(args.server, args.timeout)
        elif args.command == "resume":
            if args.reload:
                console("RELOAD")
            names = resume()
            result = {
                "changed": bool(names) or args.reload,
                "resumed": names,
                "reloaded": args.reload,
            }
        else:
            result = {"changed": False, "databases": databases()}
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(json.dumps({"changed": False, "error": str(exc)}))
        return 1
    print(json.dumps(result))
    return 3 if result.get("timeout") else 0


if __name__ == "__main__":
    sys.exit(main())
