"""pgtune-style rules: PostgreSQL settings computed from host size and workload.

Pure functions, unit-tested in tests/unit/test_pgtune.py, exposed to Ansible as the
filters ``pgtune``, ``pg_size_mb`` and ``pg_huge_pages_plan``.

Profiles:
  oltp       many short transactions, many connections, small sorts
  mixed      the general default (web application plus reporting)
  documents  the MDUS document-processing workload: JSONB and full-text work per
             query, 200 connections (before pooling); a 4 GB host gives the seed's
             shared_buffers 1GB, effective_cache_size 3GB and max_connections 200, but
             work_mem 4MB and maintenance_work_mem 64MB: the seed's 64MB lost to them on
             every sort-bound step of bench/tuning (see the profile below)
  dw         few connections, large sorts and parallel scans
"""

from __future__ import annotations

import math
import re
from typing import Any

PROFILES: dict[str, dict[str, Any]] = {
    "oltp": {
        "max_connections": 300,
        "work_mem_rule": "per_connection",
        "work_mem_divisor": 3,
        # 1/64 as in the documents profile: with 1/16 (256MB on 4 GB) bench/tuning
        # --profile oltp built indexes slower than Debian's 64MB (REINDEX 0.94x, CREATE
        # INDEX 0.85x; mixed 0.92x and 0.86x).
        "maintenance_fraction": 1 / 64,
        "default_statistics_target": 100,
        "min_wal_size_mb": 2048,
        "max_wal_size_mb": 8192,
    },
    "mixed": {
        "max_connections": 100,
        "work_mem_rule": "per_connection",
        "work_mem_divisor": 3,
        "maintenance_fraction": 1 / 64,  # as oltp, measured
        "default_statistics_target": 100,
        "min_wal_size_mb": 1024,
        "max_wal_size_mb": 4096,
    },
    "documents": {
        "max_connections": 200,
        # Measured with bench/tuning (300k documents, both clusters side by side): a sort
        # or index build that fits in one large work area is one quicksort over memory far
        # bigger than the CPU's cache, and PostgreSQL's merge of cache-sized runs beat it
        # (ORDER BY: 4MB 0.16 s, 16MB 0.22 s, 64MB 0.25 s; REINDEX: maintenance_work_mem
        # 64MB 5.3 s, 256MB 6.0 s, 512MB 6.1 s), while no hash aggregate or join gained
        # from more. So the per-connection share (4MB on the seed's 4 GB host, instead of
        # the seed's 64MB) and a maintenance area of 1/64 of the memory (64MB there, 1GB on
        # a 64 GB host). A report that needs more gets it by role or session: ALTER ROLE
        # ... SET work_mem.
        "work_mem_rule": "per_connection",
        "work_mem_divisor": 3,
        "maintenance_fraction": 1 / 64,
        # 200 made every ANALYZE (and so VACUUM ANALYZE) ~1.3x slower on the MDUS data
        # set with no query plan better for it (bench/tuning); PostgreSQL's default.
        "default_statistics_target": 100,
        # PostgreSQL's default, not 1GB: no measured gain from keeping more. bench/tuning
        # at 300k documents first put 1GB at 0.88-0.90x of Debian's ingest, but those runs
        # all ingested on Debian's cluster first, while the kernel still wrote its pages
        # back; with every ingest started after a checkpoint and a sync, 1GB ran at 0.98x
        # of 80MB (four rounds, side by side): within noise.
        "min_wal_size_mb": 80,
        "max_wal_size_mb": 4096,
    },
    "dw": {
        "max_connections": 40,
        "work_mem_rule": "per_connection",
        "work_mem_divisor": 1,
        "maintenance_fraction": 1 / 8,
        "default_statistics_target": 500,
        "min_wal_size_mb": 4096,
        "max_wal_size_mb": 16384,
    },
}

STORAGE: dict[str, dict[str, str]] = {
    "ssd": {"random_page_cost": "1.1", "effective_io_concurrency": "200"},
    "hdd": {"random_page_cost": "4.0", "effective_io_concurrency": "2"},
}

PG_DEFAULT_WORKERS_PER_GATHER = 2
PG_DEFAULT_PARALLEL_WORKERS = 8

_UNITS_KB = {"kb": 1, "mb": 1024, "gb": 1024**2, "tb": 1024**3}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kKmMgGtT][bB])?\s*$")


def size_to_mb(value: str | int) -> float:
    """Convert a PostgreSQL memory size ('1GB', '512MB', '64kB', bare MB int) to MB."""
    if isinstance(value, int):
        return float(value)
    match = _SIZE_RE.match(str(value))
    if not match:
        raise ValueError(f"not a PostgreSQL memory size: {value!r} (use e.g. 512MB or 1GB)")
    number, unit = int(match.group(1)), (match.group(2) or "mb").lower()
    return number * _UNITS_KB[unit] / 1024


def format_mb(megabytes: float) -> str:
    """Render MB as the largest exact PostgreSQL unit (1024MB -> 1GB, 0.5 -> 512kB)."""
    kilobytes = max(64, int(megabytes * 1024))
    for unit, factor in (("TB", 1024**3), ("GB", 1024**2), ("MB", 1024)):
        if kilobytes % factor == 0:
            return f"{kilobytes // factor}{unit}"
    if kilobytes >= 1024:
        return f"{kilobytes // 1024}MB"
    return f"{kilobytes}kB"


def pgtune(
    memory_mb: int,
    cpus: int,
    storage: str = "ssd",
    profile: str = "documents",
) -> dict[str, str]:
    """Return postgresql.conf settings for a host of ``memory_mb`` MB and ``cpus`` vCPUs."""
    if profile not in PROFILES:
        raise ValueError(f"unknown workload profile {profile!r}; choose one of {sorted(PROFILES)}")
    if storage not in STORAGE:
        raise ValueError(f"unknown storage type {storage!r}; choose one of {sorted(STORAGE)}")
    memory_mb, cpus = int(memory_mb), max(1, int(cpus))
    if memory_mb < 256:
        raise ValueError(f"{memory_mb} MB of memory is too little for PostgreSQL (need 256 MB)")
    rules = PROFILES[profile]
    max_connections = rules["max_connections"]

    shared_buffers = memory_mb / 4
    effective_cache = memory_mb * 3 / 4
    maintenance = min(max(memory_mb * rules["maintenance_fraction"], 64), 2048)
    wal_buffers = min(max(shared_buffers * 0.03, 0.0625), 16)
    # Parallelism never below PostgreSQL's own defaults (2 per gather and per maintenance
    # command, 8 in all): with 1 worker on a 2-vCPU host large sorts, joins, REINDEX and
    # the index passes of VACUUM ran 1.2-2.4x slower than with Debian's defaults.
    gather = max(PG_DEFAULT_WORKERS_PER_GATHER, min(4, cpus // 2))
    if rules["work_mem_rule"] == "ram_fraction":
        work_mem = memory_mb * rules["work_mem_fraction"]
    else:
        work_mem = (memory_mb - shared_buffers) / (max_connections * rules["work_mem_divisor"])
        work_mem /= gather
    work_mem = min(max(work_mem, 4), 1024)

    settings = {
        "max_connections": str(max_connections),
        "shared_buffers": format_mb(_round_down(shared_buffers)),
        "effective_cache_size": format_mb(_round_down(effective_cache)),
        "maintenance_work_mem": format_mb(_round_down(maintenance)),
        "work_mem": format_mb(_round_down(work_mem)),
        "wal_buffers": format_mb(wal_buffers),
        "min_wal_size": format_mb(rules["min_wal_size_mb"]),
        "max_wal_size": format_mb(rules["max_wal_size_mb"]),
        "checkpoint_completion_target": "0.9",
        "default_statistics_target": str(rules["default_statistics_target"]),
        # try (PostgreSQL's default), never off: each parallel worker is a new process
        # that maps the shared buffers it reads page by page, and with 4kB pages a 1GB
        # pool made a parallel full-text count 1.6x slower than Debian's 128MB; with huge
        # pages reserved (vm.nr_hugepages) the server uses them and most of that is gone
        # (bench/tuning, 200k documents: 0.058 s off, 0.043 s on, 0.036 s with 128MB).
        "huge_pages": "try",
        "max_worker_processes": str(max(8, cpus)),
        "max_parallel_workers": str(max(PG_DEFAULT_PARALLEL_WORKERS, cpus)),
        "max_parallel_workers_per_gather": str(gather),
        "max_parallel_maintenance_workers": str(gather),
    }
    settings.update(STORAGE[storage])
    return settings


def _round_down(megabytes: float) -> float:
    """Round to a tidy value: whole MB above 1 MB, so settings read like a human wrote them."""
    return float(math.floor(megabytes)) if megabytes >= 1 else megabytes


def huge_pages_plan(probe: dict[str, Any], needed: int) -> dict[str, Any]:
    """What it takes for the server to hold its shared memory in huge pages.

    probe: the host's huge page pool (/proc/meminfo: total, free, rsvd), how many huge page
    mappings the postmaster holds (mapped) and whether vm.nr_hugepages can be written here
    (writable); needed: the running server's shared_memory_size_in_huge_pages.
    Returns in_use (nothing to do), shortfall (pages missing from the free pool), target
    (vm.nr_hugepages to set: never below the current pool, whatever else uses it), restart
    (the server takes huge pages only when it starts) and refusal (why not, or '').
    """
    total, free, rsvd = (int(probe[key]) for key in ("total", "free", "rsvd"))
    plan: dict[str, Any] = {"in_use": False, "shortfall": 0, "target": total, "restart": False}
    if needed <= 0:
        return plan | {
            "refusal": "PostgreSQL reports no huge page size on this platform "
            f"(shared_memory_size_in_huge_pages = {needed})"
        }
    if int(probe["mapped"]) > 0:
        return plan | {"in_use": True, "refusal": ""}
    # Reserved pages (rsvd) are promised to a mapping already: not free for this server.
    shortfall = max(0, needed - (free - rsvd))
    refusal = ""
    if shortfall and not probe["writable"]:
        refusal = (
            f"the server needs {needed} huge pages, {free - rsvd} of the host's {total} are "
            "free, and vm.nr_hugepages is read-only here (in a container it belongs to the "
            "Docker host: reserve the pages there, or set postgresql_huge_pages_reserve false)"
        )
    return plan | {
        "shortfall": shortfall,
        "target": total + shortfall,
        "restart": True,
        "refusal": refusal,
    }


class FilterModule:
    """Ansible filters: pgtune, pg_size_mb, pg_huge_pages_plan."""

    def filters(self) -> dict[str, Any]:
        return {"pgtune": pgtune, "pg_size_mb": size_to_mb, "pg_huge_pages_plan": huge_pages_plan}
