#!/usr/bin/env python3
"""Benchmark of the MDUS schema and its migration runner (run on demand; not a test).

Generates N documents (default 1,000,000) with one analysis, three extracted entities,
one job and one audit row each, then prints p50/p95 of the seed's queries and the
runner's own times. Without --dsn it starts a throw-away PostgreSQL 15 cluster (see
tests/schema/pgcluster.py); with --dsn it needs a superuser and an empty database.

    .venv/bin/python bench/schema_bench.py --documents 200000
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "schema"))

from pgcluster import start_cluster  # noqa: E402
from test_schema import DATASET_SQL  # noqa: E402

MIGRATE = REPO / "schema" / "migrate.py"

QUERIES: dict[str, str] = {
    "full-text search, rare term (top 20)": (
        "SELECT id FROM documents WHERE search_vector @@ websearch_to_tsquery('english', %s)"
        " ORDER BY created_at DESC LIMIT 20"
    ),
    "full-text search, common term (top 20)": (
        "SELECT id FROM documents WHERE search_vector @@ websearch_to_tsquery('english', %s)"
        " ORDER BY created_at DESC LIMIT 20"
    ),
    "status filter + join analysis": (
        "SELECT d.id, a.overall_confidence FROM documents d"
        " JOIN document_analysis a ON a.document_id = d.id"
        " WHERE d.status = 'failed' AND d.document_type = %s"
        " ORDER BY d.created_at DESC LIMIT 50"
    ),
    "high-confidence entities": ("SELECT * FROM get_high_confidence_entities(%s::numeric, 100)"),
    "audit by resource": (
        "SELECT * FROM audit_logs WHERE table_name = 'documents' AND record_id = %s"
        " ORDER BY created_at DESC"
    ),
    "latest analysis of a document": "SELECT * FROM get_latest_analysis(%s::uuid)",
}

# Run as mdus_app on behalf of one of the 100 generated users (row-level security picks
# the rows: each user owns 1% of every table).
RLS_QUERIES: dict[str, str] = {
    "my documents, latest 20": "SELECT id FROM documents ORDER BY created_at DESC LIMIT 20",
    "entities of my documents, latest 50": (
        "SELECT * FROM extracted_entities ORDER BY created_at DESC LIMIT 50"
    ),
    "my analyses, latest 20": "SELECT * FROM document_analysis ORDER BY created_at DESC LIMIT 20",
    "my jobs, latest 20": "SELECT * FROM processing_jobs ORDER BY created_at DESC LIMIT 20",
}


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def run_runner(dsn: str, *args: str) -> float:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, str(MIGRATE), *args, "--dsn", dsn],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode not in (0, 2):
        raise SystemExit(f"runner failed: {proc.stderr}")
    return (time.perf_counter() - start) * 1000


def params_for(name: str, i: int, conn: psycopg.Connection[Any]) -> tuple[Any, ...]:
    if name.startswith("full-text search, rare"):
        return ("cardiomyopathy",)
    if name.startswith("full-text"):
        return (("routine", "visit checkup")[i % 2],)
    if name.startswith("status"):
        return (("medical_report", "prescription", "patient_form", "pathology_report")[i % 4],)
    if name.startswith("high"):
        return ((0.9, 0.95, 0.97)[i % 3],)
    doc = conn.execute("SELECT md5('doc' || %s)::uuid::text", (1 + i * 7919 % 1000,)).fetchone()
    assert doc
    return (doc[0],)


def report(name: str, samples: list[float], rows: int) -> None:
    p50, p95 = percentile(samples, 50), percentile(samples, 95)
    print(f"  {name:<40} {p50:>9.2f} {p95:>9.2f} {rows:>6}")


def bench_queries(conn: psycopg.Connection[Any], repeat: int) -> None:
    print(f"\nqueries ({repeat} runs each, warm cache)")
    print(f"  {'query':<40} {'p50 ms':>9} {'p95 ms':>9} {'rows':>6}")
    for name, query in QUERIES.items():
        samples, rows = [], 0
        for i in range(repeat):
            args = params_for(name, i, conn)

            def one(q: str = query, a: tuple[Any, ...] = args) -> None:
                nonlocal rows
                rows = len(conn.execute(q, a).fetchall())

            samples.append(timed(one))
        report(name, samples, rows)
    print("  as mdus_app (row-level security), one of 100 users per run:")
    for name, query in RLS_QUERIES.items():
        samples, rows = [], 0
        for i in range(repeat):
            with conn.transaction():
                conn.execute("SET LOCAL ROLE mdus_app")
                conn.execute("SELECT mdus_set_app_user(md5('user' || %s)::uuid)", (i % 100,))
                start = time.perf_counter()
                rows = len(conn.execute(query).fetchall())
                samples.append((time.perf_counter() - start) * 1000)
        report(name, samples, rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=200, help="runs per query")
    parser.add_argument("--dsn", help="superuser DSN of an empty database (default: temp cluster)")
    args = parser.parse_args()

    cluster = None
    dsn = args.dsn
    if dsn is None:
        cluster = start_cluster({"shared_buffers": "'1GB'", "max_wal_size": "'8GB'"})
        dsn = cluster.dsn()
    try:
        print(f"runner: full migrate {run_runner(dsn, 'migrate'):.0f} ms (incl. process start)")
        print(f"runner: status       {run_runner(dsn, 'status'):.0f} ms")
        everything = ("rollback", "--target", "0", "--yes-destroy-all")
        print(f"runner: rollback all {run_runner(dsn, *everything):.0f} ms")
        print(f"runner: migrate again {run_runner(dsn, 'migrate'):.0f} ms")
        with psycopg.connect(dsn, autocommit=True) as conn:
            start = time.perf_counter()
            conn.execute(DATASET_SQL.replace("%(n)s", str(args.documents)).encode())
            load = time.perf_counter() - start
            start = time.perf_counter()
            conn.execute("VACUUM ANALYZE")
            vacuum = time.perf_counter() - start
            sizes = conn.execute(
                "SELECT pg_size_pretty(pg_database_size(current_database())),"
                " (SELECT count(*) FROM extracted_entities)"
            ).fetchone()
            assert sizes
            print(
                f"data: {args.documents} documents, {sizes[1]} entities, database {sizes[0]};"
                f" load {load:.1f} s, vacuum analyze {vacuum:.1f} s"
            )
            bench_queries(conn, args.repeat)
        print(f"\nrunner: status with data {run_runner(dsn, 'status'):.0f} ms")
        print(f"runner: migrate (nothing to do) {run_runner(dsn, 'migrate'):.0f} ms")
    finally:
        if cluster is not None:
            cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
