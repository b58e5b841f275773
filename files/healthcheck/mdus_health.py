#!/usr/bin/env python3
"""mdus-health: health check of one MDUS PostgreSQL server (psycopg 3, stdlib only).

Subcommands:
  check  status healthy / degraded / unhealthy with reasons, plus the figures behind it
         (connections vs max, cache hit, long queries, lock waits, replication, archiver,
         last backup); exit code 0 / 1 / 2 (Nagios OK / WARNING / CRITICAL)
  stats  database and table sizes, unused indexes (exit code 0)

Both print a readable report, or JSON with --json. Exit code 3 (UNKNOWN) on bad usage.
The connection string comes from --dsn, else $MDUS_HEALTH_DSN, else the configuration
file, else the built-in default. The configuration file ($MDUS_HEALTH_CONFIG, default
/etc/mdus-health.json, rendered by the monitoring_agent role from its variables) holds
{"dsn": ..., "backup_metrics": ..., "thresholds": {name: value}}; command-line flags
override it. A pg_monitor member is enough; no superuser needed. On the
database hosts: runuser -u prometheus -- mdus-health check (peer login as mdus_monitor).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import psycopg
from psycopg.rows import dict_row

EXIT = {"healthy": 0, "degraded": 1, "unhealthy": 2}
EXIT_UNKNOWN = 3
LEVELS = ("ok", "warning", "critical")
DEFAULT_DSN = "user=mdus_monitor dbname=postgres host=/var/run/postgresql"
BACKUP_METRICS = "/var/lib/prometheus/node-exporter/pgbackrest.prom"
DEFAULT_CONFIG = "/etc/mdus-health.json"


@dataclass
class Finding:
    """One check: its level (ok, warning, critical) and a human reason."""

    check: str
    level: str
    message: str


@dataclass
class Thresholds:
    long_query_seconds: float = 300.0
    lock_wait_seconds: float = 60.0
    connections_warning: float = 0.8
    connections_critical: float = 0.95
    cache_hit_min: float = 0.95
    cache_min_blocks: int = 10000
    replication_lag_seconds: float = 60.0
    backup_max_age_seconds: float = 93600.0


@dataclass
class Report:
    status: str = "healthy"
    findings: list[Finding] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def add(self, check: str, level: str, message: str) -> None:
        self.findings.append(Finding(check, level, message))

    def finish(self) -> Report:
        worst = max((LEVELS.index(f.level) for f in self.findings), default=0)
        self.status = ("healthy", "degraded", "unhealthy")[worst]
        return self

    @property
    def reasons(self) -> list[str]:
        return [f"{f.check}: {f.message}" for f in self.findings if f.level != "ok"]


SQL_CONNECTIONS = """
SELECT count(*) FILTER (WHERE backend_type = 'client backend') AS used,
       current_setting('max_connections')::int AS max,
       current_setting('max_connections')::int
         - current_setting('superuser_reserved_connections')::int AS available
FROM pg_stat_activity
"""
SQL_CACHE = """
SELECT COALESCE(sum(blks_hit), 0)::bigint AS hit, COALESCE(sum(blks_read), 0)::bigint AS read
FROM pg_stat_database
"""
SQL_LONG_QUERIES = """
SELECT pid, usename, datname, query_id,
       round(EXTRACT(EPOCH FROM clock_timestamp() - query_start)::numeric, 1)::float8 AS seconds
FROM pg_stat_activity
WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()
  AND clock_timestamp() - query_start > make_interval(secs => %s)
ORDER BY query_start
"""
SQL_LOCK_WAITS = """
SELECT l.pid, a.usename, a.datname, l.locktype, l.mode, pg_blocking_pids(l.pid) AS blocked_by,
       round(EXTRACT(EPOCH FROM clock_timestamp() - l.waitstart)::numeric, 1)::float8 AS seconds
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE NOT l.granted AND l.waitstart IS NOT NULL
ORDER BY l.waitstart
"""
SQL_REPLICATION = """
SELECT pg_is_in_recovery() AS is_replica,
       CASE WHEN NOT pg_is_in_recovery() THEN 0
            WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
            ELSE GREATEST(0, COALESCE(EXTRACT(EPOCH FROM clock_timestamp()
                 - pg_last_xact_replay_timestamp()), 0))::float8 END AS lag_seconds,
       (SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming') > 0 AS streaming
"""
SQL_STANDBYS = """
SELECT application_name, host(client_addr) AS client_addr, state,
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint END AS lag_bytes
FROM pg_stat_replication ORDER BY application_name
"""
SQL_ARCHIVER = """
SELECT current_setting('archive_mode') AS archive_mode, archived_count, failed_count,
       last_failed_wal,
       (last_failed_time IS NOT NULL
        AND (last_archived_time IS NULL OR last_failed_time > last_archived_time)) AS failing,
       EXTRACT(EPOCH FROM clock_timestamp() - last_archived_time)::float8 AS last_archived_age
FROM pg_stat_archiver
"""
SQL_DATABASES = """
SELECT datname, pg_database_size(oid) AS bytes FROM pg_database
WHERE datallowconn AND has_database_privilege(oid, 'CONNECT') ORDER BY bytes DESC
"""
SQL_TABLES = """
SELECT schemaname, relname, pg_total_relation_size(relid) AS bytes, n_live_tup, n_dead_tup
FROM pg_stat_user_tables ORDER BY bytes DESC LIMIT %s
"""
SQL_UNUSED_INDEXES = """
SELECT s.schemaname, s.relname, s.indexrelname, pg_relation_size(s.indexrelid) AS bytes
FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid
WHERE s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary
ORDER BY bytes DESC LIMIT %s
"""


def query(conn: psycopg.Connection[Any], sql: str, *params: Any) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params or None)  # type: ignore[arg-type]
        return list(cur.fetchall())


def one(conn: psycopg.Connection[Any], sql: str) -> dict[str, Any]:
    result = query(conn, sql)
    return result[0] if result else {}


def last_backup(path: Path) -> dict[str, Any] | None:
    """Newest backup timestamp from the pgBackRest textfile metrics, if present."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    pattern = re.compile(
        r"^mdus_pgbackrest_last_backup_timestamp_seconds\{([^}]*)\}\s+(\S+)$", re.MULTILINE
    )
    newest: dict[str, Any] | None = None
    for labels, value in pattern.findall(text):
        if 'type="any"' not in labels:
            continue
        stanza = re.search(r'stanza="([^"]*)"', labels)
        stamp = float(value)
        if newest is None or stamp > newest["timestamp"]:
            newest = {"stanza": stanza.group(1) if stanza else "", "timestamp": stamp}
    if newest is not None:
        newest["age_seconds"] = round(time.time() - newest["timestamp"], 1)
    return newest


def check_connections(conn: psycopg.Connection[Any], limits: Thresholds, report: Report) -> None:
    conns = one(conn, SQL_CONNECTIONS)
    usage = conns["used"] / max(conns["available"], 1)
    conns["usage"] = round(usage, 4)
    report.data["connections"] = conns
    level = "ok"
    if usage >= limits.connections_critical:
        level = "critical"
    elif usage >= limits.connections_warning:
        level = "warning"
    detail = f"{conns['used']} of {conns['available']} usable ({usage:.0%})"
    report.add("connections", level, detail)


def check_cache(conn: psycopg.Connection[Any], limits: Thresholds, report: Report) -> None:
    cache = one(conn, SQL_CACHE)
    total = cache["hit"] + cache["read"]
    ratio = cache["hit"] / total if total else None
    report.data["cache_hit_ratio"] = None if ratio is None else round(ratio, 4)
    if ratio is not None and total >= limits.cache_min_blocks and ratio < limits.cache_hit_min:
        report.add("cache", "warning", f"cache hit ratio {ratio:.2%} < {limits.cache_hit_min:.0%}")
    else:
        shown = "n/a" if ratio is None else f"{ratio:.2%}"
        report.add("cache", "ok", f"cache hit ratio {shown}")


def check_activity(conn: psycopg.Connection[Any], limits: Thresholds, report: Report) -> None:
    long_queries = query(conn, SQL_LONG_QUERIES, limits.long_query_seconds)
    report.data["long_queries"] = long_queries
    if long_queries:
        worst = max(q["seconds"] for q in long_queries)
        report.add(
            "long_queries",
            "critical",
            f"{len(long_queries)} query(ies) running > {limits.long_query_seconds:g} s"
            f" (longest {worst:g} s, pid {long_queries[0]['pid']})",
        )
    else:
        report.add("long_queries", "ok", f"none > {limits.long_query_seconds:g} s")

    waits = query(conn, SQL_LOCK_WAITS)
    long_waits = [w for w in waits if w["seconds"] > limits.lock_wait_seconds]
    report.data["lock_waits"] = waits
    if long_waits:
        first = long_waits[0]
        report.add(
            "lock_waits",
            "critical",
            f"{len(long_waits)} lock wait(s) > {limits.lock_wait_seconds:g} s"
            f" (pid {first['pid']} blocked by {first['blocked_by']})",
        )
    else:
        detail = f"{len(waits)} waiting, none > {limits.lock_wait_seconds:g} s"
        report.add("lock_waits", "ok", detail)


def check_replication(conn: psycopg.Connection[Any], limits: Thresholds, report: Report) -> None:
    repl = one(conn, SQL_REPLICATION)
    repl["standbys"] = query(conn, SQL_STANDBYS)
    report.data["replication"] = repl
    if repl["is_replica"] and not repl["streaming"]:
        report.add("replication", "critical", "replica is not streaming from its primary")
    elif repl["lag_seconds"] > limits.replication_lag_seconds:
        report.add("replication", "warning", f"replay lag {repl['lag_seconds']:.0f} s")
    else:
        role = "replica" if repl["is_replica"] else "primary"
        report.add("replication", "ok", f"{role}, lag {repl['lag_seconds']:.0f} s")

    archiver = one(conn, SQL_ARCHIVER)
    report.data["archiver"] = archiver
    if archiver["archive_mode"] != "off" and archiver["failing"]:
        detail = f"archiving fails (last failed {archiver['last_failed_wal']})"
        report.add("archiver", "critical", detail)
    else:
        report.add("archiver", "ok", f"archive_mode {archiver['archive_mode']}")


def check_backup(limits: Thresholds, backup_file: Path, report: Report) -> None:
    backup = last_backup(backup_file)
    report.data["last_backup"] = backup
    if backup is None:
        return
    hours = backup["age_seconds"] / 3600
    level = "warning" if backup["age_seconds"] > limits.backup_max_age_seconds else "ok"
    report.add("backup", level, f"last backup {hours:.1f} h old (stanza {backup['stanza']})")


def check(conn: psycopg.Connection[Any], limits: Thresholds, backup_file: Path) -> Report:
    """All checks; the report's status is the worst level found."""
    report = Report()
    check_connections(conn, limits, report)
    check_cache(conn, limits, report)
    check_activity(conn, limits, report)
    check_replication(conn, limits, report)
    check_backup(limits, backup_file, report)
    return report.finish()


def stats(conn: psycopg.Connection[Any], top: int) -> dict[str, Any]:
    return {
        "databases": query(conn, SQL_DATABASES),
        "tables": query(conn, SQL_TABLES, top),
        "unused_indexes": query(conn, SQL_UNUSED_INDEXES, top),
    }


def human_bytes(value: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def table(headers: list[str], body: list[list[Any]]) -> str:
    cells = [headers, *[[str(c) for c in row] for row in body]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_check(report: Report) -> None:
    print(f"status: {report.status.upper()}")
    print(
        table(
            ["check", "level", "detail"], [[f.check, f.level, f.message] for f in report.findings]
        )
    )


def print_stats(data: dict[str, Any]) -> None:
    print(
        table(
            ["database", "size"],
            [[d["datname"], human_bytes(d["bytes"])] for d in data["databases"]],
        )
    )
    print()
    print(
        table(
            ["table", "size", "live", "dead"],
            [
                [
                    f"{t['schemaname']}.{t['relname']}",
                    human_bytes(t["bytes"]),
                    t["n_live_tup"],
                    t["n_dead_tup"],
                ]
                for t in data["tables"]
            ],
        )
    )
    print()
    print(
        table(
            ["unused index", "table", "size"],
            [
                [f"{i['schemaname']}.{i['indexrelname']}", i["relname"], human_bytes(i["bytes"])]
                for i in data["unused_indexes"]
            ],
        )
    )


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_UNKNOWN)


def load_config(path: Path) -> dict[str, Any]:
    """The role-rendered configuration, checked: unknown names are refused, not ignored."""
    if not path.exists():
        return {}
    try:
        config = json.loads(path.read_text())
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
        known = asdict(Thresholds())
        unknown = sorted(set(config.get("thresholds", {})) - set(known))
        if unknown:
            raise ValueError(f"unknown thresholds {', '.join(unknown)}")
        config["thresholds"] = {
            name: type(known[name])(value) for name, value in config.get("thresholds", {}).items()
        }
    except (ValueError, TypeError, OSError) as exc:
        print(f"mdus-health: error: configuration {path}: {exc}", file=sys.stderr)
        sys.exit(EXIT_UNKNOWN)
    return config


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    config = load_config(Path(os.environ.get("MDUS_HEALTH_CONFIG", DEFAULT_CONFIG)))
    parser = Parser(
        prog="mdus-health",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dsn",
        default=os.environ.get("MDUS_HEALTH_DSN", config.get("dsn", DEFAULT_DSN)),
        help="libpq connection string",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)
    chk = sub.add_parser("check", help="health status with reasons (exit 0/1/2)")
    defaults = Thresholds(**config.get("thresholds", {}))
    for name, value in asdict(defaults).items():
        chk.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value, dest=name)
    chk.add_argument(
        "--backup-metrics",
        type=Path,
        default=Path(config.get("backup_metrics", BACKUP_METRICS)),
        help="pgBackRest textfile metrics",
    )
    sts = sub.add_parser("stats", help="database and table sizes, unused indexes")
    sts.add_argument("--top", type=int, default=10, help="rows per list")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        conn = psycopg.connect(
            args.dsn, autocommit=True, connect_timeout=10, application_name="mdus-health"
        )
    except psycopg.Error as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        report = Report(
            findings=[Finding("connect", "critical", f"cannot connect: {message}")]
        ).finish()
        if args.json:
            print(json.dumps({"status": report.status, "reasons": report.reasons}, indent=2))
        else:
            print_check(report)
        return EXIT["unhealthy"] if args.command == "check" else EXIT_UNKNOWN
    with conn:
        conn.execute("SET statement_timeout = '10s'")
        if args.command == "stats":
            data = stats(conn, args.top)
            print(json.dumps(data, indent=2, default=str) if args.json else "", end="")
            if not args.json:
                print_stats(data)
            else:
                print()
            return 0
        limits = Thresholds(**{k: getattr(args, k) for k in asdict(Thresholds())})
        report = check(conn, limits, args.backup_metrics)
    if args.json:
        out = {
            "status": report.status,
            "reasons": report.reasons,
            "findings": [asdict(f) for f in report.findings],
            **report.data,
        }
        print(json.dumps(out, indent=2, default=str))
    else:
        print_check(report)
    return EXIT[report.status]


if __name__ == "__main__":
    sys.exit(main())
