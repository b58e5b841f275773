"""The exporter's pg_mdus_partition_maintenance query (monitoring_agent's
postgres_exporter_queries.yaml.j2) on a real migrated database, as mdus_monitor: one row
per partition set after a maintenance run, the failure of a set that has rows in its
DEFAULT partition, and no error (no rows) in a database without the MDUS schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import psycopg
import pytest
import yaml
from psycopg import errors
from test_schema import acting_as

Conn = psycopg.Connection[Any]
TEMPLATE = (
    Path(__file__).parents[2] / "roles/monitoring_agent/templates/postgres_exporter_queries.yaml.j2"
)


def query() -> str:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["comment"] = lambda text: f"# {text}"
    defaults = yaml.safe_load((TEMPLATE.parents[1] / "defaults/main.yml").read_text())
    text = env.from_string(TEMPLATE.read_text()).render(ansible_managed="managed", **defaults)
    return yaml.safe_load(text)["pg_mdus_partition_maintenance"]["query"]


def metric(conn: Conn) -> dict[str, tuple[float, float, int]]:
    with acting_as(conn, "mdus_monitor"):
        rows = conn.execute(query()).fetchall()
    return {parent: (last_run, last_success, ok) for parent, last_run, last_success, ok in rows}


def test_one_row_per_set_after_a_run_and_a_failed_set_shows(db: Conn) -> None:
    assert metric(db) == {}  # no run yet: no series (the Stale alert needs a first run)
    db.execute("CALL run_partition_maintenance()")
    first = metric(db)
    assert set(first) == {"public.audit_logs", "public.processing_metrics"}
    assert all(
        ok == 1 and last_success == last_run > 0 for last_run, last_success, ok in first.values()
    )

    db.execute(
        "INSERT INTO audit_logs (action, table_name, created_at)"
        " VALUES ('LOGIN', 'x', now() + interval '10 years')"
    )
    with pytest.raises(errors.RaiseException):
        db.execute("CALL run_partition_maintenance()")
    second = metric(db)
    last_run, last_success, ok = second["public.audit_logs"]
    assert ok == 0 and last_run > last_success == first["public.audit_logs"][1]
    assert second["public.processing_metrics"][2] == 1


def test_no_error_in_a_database_without_the_schema(empty_db: str) -> None:
    with psycopg.connect(empty_db, autocommit=True) as conn:
        assert conn.execute(query()).fetchall() == []
