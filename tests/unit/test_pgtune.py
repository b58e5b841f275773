"""Unit tests for the tuning rules of the postgresql role (roles/postgresql/filter_plugins)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.modload import load_module

PLUGIN = Path(__file__).parents[2] / "roles/postgresql/filter_plugins/pgtune.py"


pgtune = load_module("pgtune", PLUGIN)


def test_seed_values_for_4gb_document_host() -> None:
    settings = pgtune.pgtune(4096, 2, "ssd", "documents")
    assert settings["shared_buffers"] == "1GB"
    assert settings["effective_cache_size"] == "3GB"
    # Not the seed's 64MB: bench/tuning measured it slower on every sort-bound step.
    assert settings["work_mem"] == "4MB"
    assert settings["maintenance_work_mem"] == "64MB"
    assert settings["max_connections"] == "200"
    assert settings["random_page_cost"] == "1.1"
    assert settings["checkpoint_completion_target"] == "0.9"
    # PostgreSQL's 80MB: 1GB kept for recycling gained nothing in bench/tuning's ingest.
    assert settings["min_wal_size"] == "80MB"
    assert settings["max_wal_size"] == "4GB"


@pytest.mark.parametrize(
    ("memory_mb", "cpus", "profile", "expected"),
    [
        (1024, 1, "oltp", {"shared_buffers": "256MB", "work_mem": "4MB", "max_connections": "300"}),
        (2048, 2, "mixed", {"shared_buffers": "512MB", "effective_cache_size": "1536MB"}),
        (8192, 4, "documents", {"shared_buffers": "2GB", "work_mem": "5MB"}),
        (16384, 8, "oltp", {"shared_buffers": "4GB", "work_mem": "4MB"}),
        (
            65536,
            16,
            "documents",
            {
                "shared_buffers": "16GB",
                "work_mem": "20MB",
                "maintenance_work_mem": "1GB",
                "huge_pages": "try",
            },
        ),
        (32768, 8, "dw", {"max_connections": "40", "work_mem": "153MB"}),
        (4096, 2, "dw", {"maintenance_work_mem": "512MB", "default_statistics_target": "500"}),
        # Not 1/16 (256MB): index builds lost to Debian's 64MB in bench/tuning --profile.
        (4096, 2, "oltp", {"maintenance_work_mem": "64MB"}),
        (4096, 2, "mixed", {"maintenance_work_mem": "64MB"}),
        (65536, 16, "mixed", {"maintenance_work_mem": "1GB"}),
    ],
)
def test_table_of_host_sizes(
    memory_mb: int, cpus: int, profile: str, expected: dict[str, str]
) -> None:
    settings = pgtune.pgtune(memory_mb, cpus, "ssd", profile)
    for name, value in expected.items():
        assert settings[name] == value, name


@pytest.mark.parametrize("memory_mb", [512, 1024, 3000, 4096, 7777, 24576, 262144])
@pytest.mark.parametrize("profile", sorted(pgtune.PROFILES))
def test_invariants(memory_mb: int, profile: str) -> None:
    settings = pgtune.pgtune(memory_mb, 2, "ssd", profile)
    shared = pgtune.size_to_mb(settings["shared_buffers"])
    cache = pgtune.size_to_mb(settings["effective_cache_size"])
    assert shared <= memory_mb / 4
    assert shared < cache < memory_mb
    assert pgtune.size_to_mb(settings["maintenance_work_mem"]) <= 2048
    assert 4 <= pgtune.size_to_mb(settings["work_mem"]) <= 1024
    assert pgtune.size_to_mb(settings["wal_buffers"]) <= 16


def test_parallel_settings_follow_cpus() -> None:
    settings = pgtune.pgtune(8192, 12, "ssd", "mixed")
    assert settings["max_worker_processes"] == "12"
    assert settings["max_parallel_workers"] == "12"
    assert settings["max_parallel_workers_per_gather"] == "4"
    single = pgtune.pgtune(8192, 1, "ssd", "mixed")
    assert single["max_parallel_workers_per_gather"] == "2"
    assert single["max_worker_processes"] == "8"


# PostgreSQL 15's own defaults for the resource settings the rules compute (not the
# estimate effective_cache_size, which the rules set from the real memory). Parallelism
# below these lost to Debian's defaults in bench/tuning (issue 16).
PG_DEFAULT_FLOORS = {
    "max_parallel_workers_per_gather": 2,
    "max_parallel_maintenance_workers": 2,
    "max_parallel_workers": 8,
    "max_worker_processes": 8,
    "shared_buffers": 128,
    "maintenance_work_mem": 64,
    "work_mem": 4,
}


@pytest.mark.parametrize("cpus", [1, 2, 3, 4, 8, 16, 64])
@pytest.mark.parametrize("memory_mb", [1024, 4096, 16384])
@pytest.mark.parametrize("profile", sorted(pgtune.PROFILES))
def test_never_below_postgresql_defaults(memory_mb: int, cpus: int, profile: str) -> None:
    settings = pgtune.pgtune(memory_mb, cpus, "ssd", profile)
    for name, floor in PG_DEFAULT_FLOORS.items():
        value = settings[name]
        number = int(value) if value.isdigit() else pgtune.size_to_mb(value)
        assert number >= floor, (name, value)
    assert int(settings["default_statistics_target"]) >= 100
    assert int(settings["max_parallel_workers"]) <= int(settings["max_worker_processes"])


def test_document_profile_keeps_the_default_statistics_target() -> None:
    assert pgtune.pgtune(4096, 2, "ssd", "documents")["default_statistics_target"] == "100"


def test_hdd_storage() -> None:
    settings = pgtune.pgtune(4096, 2, "hdd", "documents")
    assert settings["random_page_cost"] == "4.0"
    assert settings["effective_io_concurrency"] == "2"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"profile": "webscale"}, "unknown workload profile"),
        ({"storage": "tape"}, "unknown storage type"),
        ({"memory_mb": 100}, "too little"),
    ],
)
def test_bad_input_is_refused(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"memory_mb": 4096, "cpus": 2, "storage": "ssd", "profile": "mixed"}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        pgtune.pgtune(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "megabytes"),
    [
        ("1GB", 1024),
        ("512MB", 512),
        ("64kB", 0.0625),
        ("2TB", 2 * 1024 * 1024),
        ("128", 128),
        (256, 256),
    ],
)
def test_size_to_mb(text: str | int, megabytes: float) -> None:
    assert pgtune.size_to_mb(text) == megabytes


def test_size_to_mb_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="memory size"):
        pgtune.size_to_mb("lots")


def test_format_mb() -> None:
    assert pgtune.format_mb(1024) == "1GB"
    assert pgtune.format_mb(1536) == "1536MB"
    assert pgtune.format_mb(0.5) == "512kB"


def _probe(total: int, free: int, rsvd: int = 0, mapped: int = 0, writable: bool = True) -> dict:
    return {"total": total, "free": free, "rsvd": rsvd, "mapped": mapped, "writable": writable}


def test_huge_pages_in_use_need_nothing() -> None:
    plan = pgtune.huge_pages_plan(_probe(530, 0, mapped=1, writable=False), 530)
    assert plan == {"in_use": True, "shortfall": 0, "target": 530, "restart": False, "refusal": ""}


def test_huge_pages_raise_only_the_shortfall_and_never_lower() -> None:
    # Another user holds 100 of the 300 pages and has 50 more reserved: 150 are free to take.
    plan = pgtune.huge_pages_plan(_probe(300, 200, rsvd=50), 530)
    assert plan["shortfall"] == 380
    assert plan["target"] == 680
    assert plan["restart"] and not plan["refusal"]
    # Enough free pages: no raise, the pool stays as it is, a restart takes them.
    plan = pgtune.huge_pages_plan(_probe(800, 800), 530)
    assert plan["shortfall"] == 0
    assert plan["target"] == 800
    assert plan["restart"]


def test_huge_pages_refused_where_the_pool_is_read_only() -> None:
    plan = pgtune.huge_pages_plan(_probe(0, 0, writable=False), 530)
    assert "530 huge pages" in plan["refusal"]
    assert "postgresql_huge_pages_reserve" in plan["refusal"]
    # Read-only but enough free pages (the Docker host reserved them): no refusal.
    assert not pgtune.huge_pages_plan(_probe(600, 600, writable=False), 530)["refusal"]


def test_huge_pages_refused_without_a_huge_page_size() -> None:
    plan = pgtune.huge_pages_plan(_probe(0, 0), -1)
    assert "shared_memory_size_in_huge_pages = -1" in plan["refusal"]
