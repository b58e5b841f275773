#!/usr/bin/env python3
"""Node-exporter textfile metrics of the MDUS platform that no exporter provides.

Usage:
  mdus-textfile-metrics pgbackrest --output FILE [--user USER] -- pgbackrest [options]
      Runs `pgbackrest --output=json info` (as USER through runuser when given) and
      writes backup freshness per stanza and repository. When the command fails, only
      mdus_pgbackrest_up 0 is written, so the freshness alerts keep working from the
      last good timestamps until they age out.
  mdus-textfile-metrics pgbouncer --output FILE [--dsn DSN]
      Reads SHOW POOLS and SHOW DATABASES from PgBouncer's admin console (psycopg 3,
      simple query protocol) and writes pool use per database and user. When PgBouncer
      does not answer, only mdus_pgbouncer_up 0 is written.
  mdus-textfile-metrics certs --output FILE PATH [PATH ...]
      Reads every PEM certificate (PATH: a file, or a directory whose *.crt and *.pem
      files are read) with `openssl x509` and writes its expiry time, serial and subject.
      A file that cannot be read or parsed is written as mdus_certificate_read_ok 0.
FILE is replaced atomically. Exit code 0 when the source answered, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BACKUP_TYPES = ("full", "diff", "incr")

PGBACKREST_HELP = {
    "mdus_pgbackrest_up": "1 if pgbackrest info ran and returned JSON",
    "mdus_pgbackrest_collect_timestamp_seconds": "Unix time these metrics were collected",
    "mdus_pgbackrest_stanza_status": "pgBackRest stanza status code (0 ok, 1 missing stanza"
    " path, 2 no valid backups, 3 missing stanza data, 4 cipher mismatch, 5 database"
    " mismatch, 6 backup/expire running, 99 other)",
    "mdus_pgbackrest_repo_status": "pgBackRest status code of one repository of the stanza"
    " (0 ok; codes as for the stanza)",
    "mdus_pgbackrest_backups": "Backups in a repository",
    "mdus_pgbackrest_last_backup_timestamp_seconds": "Unix time the newest backup of a type"
    " finished in a repository (type any: of every type)",
    "mdus_pgbackrest_last_backup_age_seconds": "Seconds since the newest backup of a type"
    " finished, at collection time",
    "mdus_pgbackrest_last_backup_duration_seconds": "How long the newest backup of a type took",
    "mdus_pgbackrest_last_backup_size_bytes": "Database size of the newest backup of a type",
}

PGBOUNCER_HELP = {
    "mdus_pgbouncer_up": "1 if PgBouncer's admin console answered",
    "mdus_pgbouncer_pool_clients": "Client connections of a pool (database, user) by state",
    "mdus_pgbouncer_pool_servers": "Server connections of a pool (database, user) by state",
    "mdus_pgbouncer_pool_maxwait_seconds": "How long the oldest waiting client of a pool waits",
    "mdus_pgbouncer_database_pool_size": "Server connections one pool of the database may open",
    "mdus_pgbouncer_database_reserve_pool": "Extra server connections a pool may open when"
    " clients wait",
    "mdus_pgbouncer_database_current_connections": "Server connections open to the database",
}
# SHOW POOLS columns -> (metric, state label)
POOL_COLUMNS = {
    "cl_active": ("mdus_pgbouncer_pool_clients", "active"),
    "cl_waiting": ("mdus_pgbouncer_pool_clients", "waiting"),
    "sv_active": ("mdus_pgbouncer_pool_servers", "active"),
    "sv_idle": ("mdus_pgbouncer_pool_servers", "idle"),
    "sv_used": ("mdus_pgbouncer_pool_servers", "used"),
    "sv_tested": ("mdus_pgbouncer_pool_servers", "tested"),
    "sv_login": ("mdus_pgbouncer_pool_servers", "login"),
}
# SHOW DATABASES columns -> metric
DATABASE_COLUMNS = {
    "pool_size": "mdus_pgbouncer_database_pool_size",
    "reserve_pool": "mdus_pgbouncer_database_reserve_pool",
    "current_connections": "mdus_pgbouncer_database_current_connections",
}
ADMIN_DATABASE = "pgbouncer"

CERT_HELP = {
    "mdus_certificates_collect_timestamp_seconds": "Unix time the certificates were read",
    "mdus_certificate_read_ok": "1 if the certificate file was read and parsed",
    "mdus_certificate_expiry_timestamp_seconds": "Unix time the certificate stops being valid"
    " (notAfter)",
    "mdus_certificate_not_before_timestamp_seconds": "Unix time the certificate became valid",
}
CERT_SUFFIXES = (".crt", ".pem")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _sample(name: str, labels: dict[str, str], value: float) -> str:
    inner = ",".join(f'{key}="{_escape(val)}"' for key, val in sorted(labels.items()))
    text = f"{value:.0f}" if float(value).is_integer() else repr(float(value))
    return f"{name}{{{inner}}} {text}" if inner else f"{name} {text}"


def _repo_key(backup: dict[str, Any]) -> str:
    return str(backup.get("database", {}).get("repo-key", 1))


def _newest_samples(
    samples: dict[str, list[str]], labels: dict[str, str], chosen: list[dict[str, Any]], now: float
) -> None:
    """Freshness samples of the newest of `chosen` (backups of one type in one repository)."""
    newest = max(chosen, key=lambda b: int(b["timestamp"]["stop"]))
    stop = int(newest["timestamp"]["stop"])
    start = int(newest["timestamp"].get("start", stop))
    values = {
        "mdus_pgbackrest_last_backup_timestamp_seconds": stop,
        "mdus_pgbackrest_last_backup_age_seconds": max(0, int(now) - stop),
        "mdus_pgbackrest_last_backup_duration_seconds": max(0, stop - start),
        "mdus_pgbackrest_last_backup_size_bytes": int(newest.get("info", {}).get("size", 0)),
    }
    for metric, value in values.items():
        samples[metric].append(_sample(metric, labels, value))


def metrics_from_info(info: list[dict[str, Any]] | None, now: float) -> str:
    """Exposition text for the parsed JSON of `pgbackrest info` (None: the command failed)."""
    samples: dict[str, list[str]] = {name: [] for name in PGBACKREST_HELP}
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
        for repo in stanza.get("repo", []):
            samples["mdus_pgbackrest_repo_status"].append(
                _sample(
                    "mdus_pgbackrest_repo_status",
                    {"stanza": name, "repo": str(repo.get("key", 1))},
                    int(repo.get("status", {}).get("code", 99)),
                )
            )
        backups = [b for b in stanza.get("backup", []) if b.get("timestamp", {}).get("stop")]
        # Every repository of the stanza (repo1, and repo2 for cross-region copies) ages
        # on its own: a repository that stopped receiving backups must not hide behind
        # the other one's fresh backups.
        repos = sorted({str(r.get("key", 1)) for r in stanza.get("repo", [])} or {"1"})
        for repo_key in repos:
            in_repo = [b for b in backups if _repo_key(b) == repo_key]
            samples["mdus_pgbackrest_backups"].append(
                _sample("mdus_pgbackrest_backups", {"stanza": name, "repo": repo_key}, len(in_repo))
            )
            for kind in (*BACKUP_TYPES, "any"):
                chosen = [b for b in in_repo if kind == "any" or b.get("type") == kind]
                if chosen:
                    labels = {"stanza": name, "type": kind, "repo": repo_key}
                    _newest_samples(samples, labels, chosen, now)
    return _render(PGBACKREST_HELP, samples)


def _render(helps: dict[str, str], samples: dict[str, list[str]]) -> str:
    lines: list[str] = []
    for name, rows in samples.items():
        if rows:
            lines += [f"# HELP {name} {helps[name]}", f"# TYPE {name} gauge", *rows]
    return "\n".join(lines) + "\n"


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def metrics_from_pgbouncer(
    pools: list[dict[str, Any]] | None, databases: list[dict[str, Any]] | None
) -> str:
    """Exposition text for SHOW POOLS / SHOW DATABASES rows (None: PgBouncer is down)."""
    samples: dict[str, list[str]] = {name: [] for name in PGBOUNCER_HELP}
    up = pools is not None and databases is not None
    samples["mdus_pgbouncer_up"].append(_sample("mdus_pgbouncer_up", {}, 1 if up else 0))
    for pool in pools or []:
        if pool.get("database") == ADMIN_DATABASE:
            continue
        labels = {"database": str(pool.get("database")), "user": str(pool.get("user"))}
        for column, (metric, state) in POOL_COLUMNS.items():
            value = _number(pool.get(column))
            samples[metric].append(_sample(metric, {**labels, "state": state}, value))
        wait = _number(pool.get("maxwait")) + _number(pool.get("maxwait_us")) / 1e6
        samples["mdus_pgbouncer_pool_maxwait_seconds"].append(
            _sample("mdus_pgbouncer_pool_maxwait_seconds", labels, wait)
        )
    for database in databases or []:
        if database.get("name") == ADMIN_DATABASE:
            continue
        labels = {"database": str(database.get("name"))}
        for column, metric in DATABASE_COLUMNS.items():
            samples[metric].append(_sample(metric, labels, _number(database.get(column))))
    return _render(PGBOUNCER_HELP, samples)


def read_pgbouncer(dsn: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """SHOW POOLS and SHOW DATABASES from the admin console, or None if it fails."""
    # python3-psycopg is installed with this script on the database hosts only
    import psycopg  # noqa: PLC0415
    from psycopg.rows import dict_row  # noqa: PLC0415

    try:
        with (
            psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn,
            # the admin console speaks the simple query protocol only
            psycopg.ClientCursor(conn, row_factory=dict_row) as cur,
        ):
            pools = list(cur.execute("SHOW POOLS").fetchall())
            databases = list(cur.execute("SHOW DATABASES").fetchall())
    except psycopg.Error as exc:
        print(f"PgBouncer admin console: {exc}", file=sys.stderr)
        return None
    return pools, databases


def run_command(argv: list[str], what: str, timeout: float) -> str | None:
    """stdout of a command that succeeded; None (reason on stderr) otherwise."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"{what} failed: {exc}", file=sys.stderr)
        return None
    if proc.returncode != 0:
        print(f"{what} exited {proc.returncode}: {proc.stderr.strip()}", file=sys.stderr)
        return None
    return proc.stdout


def run_info(command: list[str], user: str | None) -> list[dict[str, Any]] | None:
    argv = [*command, "--output=json", "info"]
    if user:
        argv = ["runuser", "-u", user, "--", *argv]
    stdout = run_command(argv, "pgbackrest info", timeout=120)
    if stdout is None:
        return None
    try:
        parsed = json.loads(stdout)
    except json.JSONDecodeError as exc:
        print(f"pgbackrest info returned no JSON: {exc}", file=sys.stderr)
        return None
    return parsed if isinstance(parsed, list) else None


def certificate_files(paths: list[Path]) -> list[Path]:
    """The files named, and the *.crt / *.pem files of the directories named."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix in CERT_SUFFIXES)
        else:
            found.append(path)
    return found


def _openssl_time(value: str) -> float:
    """openssl's 'Mar  1 12:00:00 2027 GMT' as Unix time."""
    return (
        datetime.strptime(" ".join(value.split()), "%b %d %H:%M:%S %Y %Z")
        .replace(tzinfo=UTC)
        .timestamp()
    )


def read_certificate(path: Path) -> dict[str, Any] | None:
    """notBefore, notAfter, serial and subject of the first certificate in a PEM file."""
    argv = ["openssl", "x509", "-noout", "-startdate", "-enddate", "-serial", "-subject"]
    argv += ["-nameopt", "RFC2253", "-in", str(path)]
    stdout = run_command(argv, str(path), timeout=30)
    if stdout is None:
        return None
    fields = dict(line.split("=", 1) for line in stdout.splitlines() if "=" in line)
    try:
        return {
            "not_before": _openssl_time(fields["notBefore"]),
            "not_after": _openssl_time(fields["notAfter"]),
            "serial": fields["serial"].strip().lower(),
            "subject": fields.get("subject", "").strip(),
        }
    except (KeyError, ValueError) as exc:
        print(f"{path}: unexpected openssl output ({exc})", file=sys.stderr)
        return None


def metrics_from_certificates(certs: dict[Path, dict[str, Any] | None], now: float) -> str:
    """Exposition text for the certificates read (None: the file could not be read)."""
    samples: dict[str, list[str]] = {name: [] for name in CERT_HELP}
    samples["mdus_certificates_collect_timestamp_seconds"].append(
        _sample("mdus_certificates_collect_timestamp_seconds", {}, now)
    )
    for path, cert in certs.items():
        samples["mdus_certificate_read_ok"].append(
            _sample("mdus_certificate_read_ok", {"path": str(path)}, 0 if cert is None else 1)
        )
        if cert is None:
            continue
        labels = {"path": str(path), "serial": cert["serial"], "subject": cert["subject"]}
        for metric, key in (
            ("mdus_certificate_expiry_timestamp_seconds", "not_after"),
            ("mdus_certificate_not_before_timestamp_seconds", "not_before"),
        ):
            samples[metric].append(_sample(metric, labels, cert[key]))
    return _render(CERT_HELP, samples)


def write_atomically(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="source", required=True)
    backrest = sub.add_parser("pgbackrest", help="backup freshness from pgbackrest info")
    backrest.add_argument("--user", default=None, help="run pgbackrest as this OS user")
    backrest.add_argument("command", nargs="+", help="pgbackrest command line")
    bouncer = sub.add_parser("pgbouncer", help="pool use from PgBouncer's admin console")
    bouncer.add_argument(
        "--dsn",
        default="host=/run/pgbouncer port=6432 dbname=pgbouncer",
        help="libpq connection string of the admin console",
    )
    certs = sub.add_parser("certs", help="expiry of PEM certificates")
    certs.add_argument("paths", nargs="+", type=Path, help="certificate files or directories")
    for source in (backrest, bouncer, certs):
        source.add_argument("--output", type=Path, required=True, help="textfile to write")
    args = parser.parse_args(argv)
    if args.source == "certs":
        read = {path: read_certificate(path) for path in certificate_files(args.paths)}
        write_atomically(args.output, metrics_from_certificates(read, time.time()))
        return 0 if read and all(read.values()) else 1
    if args.source == "pgbackrest":
        info = run_info(args.command, args.user)
        write_atomically(args.output, metrics_from_info(info, time.time()))
        return 0 if info is not None else 1
    rows = read_pgbouncer(args.dsn)
    pools, databases = rows if rows is not None else (None, None)
    write_atomically(args.output, metrics_from_pgbouncer(pools, databases))
    return 0 if rows is not None else 1


if __name__ == "__main__":
    sys.exit(main())
