"""DR drills from a client's view: a bounded probe writer sends numbered inserts through
PgBouncer's read-write alias while an operation runs, then RPO (acknowledged writes
missing on the new primary) and RTO (longest gap between acknowledged writes) are
measured. Used by the `dr` molecule scenario; runs by hand too:

  python -m tests.integration.drill --dsn DSN --name switchover --out DIR -- \\
      ansible-playbook -i inventories/lab playbooks/switchover.yml -e target=mdus-pg2
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg

TABLE_DDL = (
    "CREATE TABLE IF NOT EXISTS probe (id bigint PRIMARY KEY, run text NOT NULL,"
    " at timestamptz NOT NULL DEFAULT clock_timestamp())"
)


@dataclass
class Outcome:
    """What the probe writer saw."""

    acked: list[tuple[int, float]] = field(default_factory=list)  # (id, wall clock)
    errors: list[tuple[float, str]] = field(default_factory=list)


class ProbeWriter(threading.Thread):
    """Numbered inserts at `rate` per second, reconnecting after every error, for at most
    `max_seconds` (bounded even if stop() is never called)."""

    def __init__(self, dsn: str, run: str, rate: float = 15.0, max_seconds: float = 900) -> None:
        super().__init__(daemon=True)
        self.dsn, self.run_id, self.period, self.max_seconds = dsn, run, 1.0 / rate, max_seconds
        self.outcome = Outcome()
        self._halt = threading.Event()
        self._next_id = int(time.time() * 1000) * 1000

    def stop(self) -> Outcome:
        self._halt.set()
        self.join(timeout=30)
        return self.outcome

    def run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        deadline = time.monotonic() + self.max_seconds
        tick = time.monotonic()
        while not self._halt.is_set() and time.monotonic() < deadline:
            self._next_id += 1
            try:
                if conn is None:
                    conn = psycopg.connect(self.dsn, autocommit=True, prepare_threshold=None)
                conn.execute(
                    "INSERT INTO probe (id, run) VALUES (%s, %s)", (self._next_id, self.run_id)
                )
                self.outcome.acked.append((self._next_id, time.time()))
            except psycopg.Error as exc:
                self.outcome.errors.append((time.time(), str(exc).splitlines()[0][:200]))
                if conn is not None:
                    conn.close()
                conn = None
            tick += self.period
            time.sleep(max(0.0, tick - time.monotonic()))
            tick = max(tick, time.monotonic() - self.period)
        if conn is not None:
            conn.close()


def prepare(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        conn.execute(TABLE_DDL)


def measure(dsn: str, run: str, outcome: Outcome) -> dict[str, Any]:
    """RPO and RTO of one drill, read back through the same alias (the new primary)."""
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
        present = {row[0] for row in conn.execute("SELECT id FROM probe WHERE run = %s", (run,))}
    missing = [i for i, _ in outcome.acked if i not in present]
    times = [t for _, t in outcome.acked]
    gaps = [(b - a, a) for a, b in itertools.pairwise(times)]
    longest, since = max(gaps, default=(0.0, times[0] if times else 0.0))
    return {
        "acked": len(outcome.acked),
        "client_errors": len(outcome.errors),
        "first_errors": sorted({e for _, e in outcome.errors})[:5],
        "rpo_lost_writes": len(missing),
        "lost_ids": missing[:20],
        "rto_seconds": round(longest, 3),
        "rto_gap_started": since,
    }


def drill(
    name: str,
    dsn: str,
    action: Callable[[], subprocess.CompletedProcess[str]],
    *,
    out_dir: Path,
    lead: float = 3.0,
    settle: float = 4.0,
    rate: float = 15.0,
) -> dict[str, Any]:
    """Write, run the action, keep writing `settle` seconds, stop, measure, save JSON."""
    run = f"{name}-{int(time.time())}"
    prepare(dsn)
    writer = ProbeWriter(dsn, run, rate=rate)
    writer.start()
    time.sleep(lead)
    started = time.time()
    done = action()
    ended = time.time()
    time.sleep(settle)
    outcome = writer.stop()
    try:
        measured = measure(dsn, run, outcome)
    except psycopg.Error as exc:
        # The client path is still closed after the action: show what the action said.
        tail = (done.stdout + done.stderr)[-4000:]
        raise AssertionError(
            f"{name}: no client gets through {settle} s after the action "
            f"(rc {done.returncode}): {exc}\n--- action output (tail) ---\n{tail}"
        ) from exc
    result: dict[str, Any] = {
        "drill": name,
        "run": run,
        "started": started,
        "action_seconds": round(ended - started, 2),
        "action_rc": done.returncode,
        **measured,
    }
    if done.returncode != 0:
        result["action_output"] = (done.stdout + done.stderr)[-3000:]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"drill-{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def textfile(results: list[dict[str, Any]]) -> str:
    """node-exporter textfile metrics of the last drills (one series per drill name)."""
    lines = [
        "# HELP mdus_dr_drill_last_run_timestamp_seconds When the drill last ran.",
        "# TYPE mdus_dr_drill_last_run_timestamp_seconds gauge",
        "# HELP mdus_dr_drill_success 1 when the last drill kept its RPO and finished.",
        "# TYPE mdus_dr_drill_success gauge",
        "# HELP mdus_dr_drill_rpo_lost_writes Acknowledged writes missing afterwards.",
        "# TYPE mdus_dr_drill_rpo_lost_writes gauge",
        "# HELP mdus_dr_drill_rto_seconds Longest gap between acknowledged writes.",
        "# TYPE mdus_dr_drill_rto_seconds gauge",
    ]
    for r in results:
        label = f'{{drill="{r["drill"]}"}}'
        ok = 1 if r["action_rc"] == 0 and r.get("expected_rpo_kept", True) else 0
        lines += [
            f"mdus_dr_drill_last_run_timestamp_seconds{label} {r['started']:.0f}",
            f"mdus_dr_drill_success{label} {ok}",
            f"mdus_dr_drill_rpo_lost_writes{label} {r['rpo_lost_writes']}",
            f"mdus_dr_drill_rto_seconds{label} {r['rto_seconds']}",
        ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="libpq DSN of the read-write alias")
    parser.add_argument("--name", required=True)
    parser.add_argument("--out", type=Path, default=Path(".dr-reports"))
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = [c for c in args.command if c != "--"]
    result = drill(
        args.name,
        args.dsn,
        lambda: subprocess.run(command, capture_output=True, text=True, check=False),
        out_dir=args.out,
    )
    print(json.dumps({k: v for k, v in result.items() if k != "action_output"}, indent=2))
    (args.out / f"mdus_dr_drill_{args.name}.prom").write_text(textfile([result]))
    return 0 if result["action_rc"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["Outcome", "ProbeWriter", "asdict", "drill", "measure", "prepare", "textfile"]
