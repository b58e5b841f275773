"""The topology verdict: the real primary from the hosts' state, and every refusal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.modload import load_module

topo = load_module(
    "topology_filters", Path(__file__).parents[2] / "roles/topology/filter_plugins/topology.py"
)
HOSTS = ["db1", "db2", "db3"]
SYSID = "7312345678901234567"


def primary(tl: int = 1, lsn: str = "0/5000000", **extra: Any) -> dict[str, Any]:
    return {
        "exists": True,
        "running": True,
        "in_recovery": False,
        "timeline": tl,
        "system_identifier": SYSID,
        "current_lsn": lsn,
        "standby_signal": False,
        "history": [],
        "record": None,
        **extra,
    }


def standby(tl: int = 1, lsn: str = "0/5000000", **extra: Any) -> dict[str, Any]:
    return {
        "exists": True,
        "running": True,
        "in_recovery": True,
        "timeline": tl,
        "system_identifier": SYSID,
        "replay_lsn": lsn,
        "standby_signal": True,
        "record": None,
        **extra,
    }


def verdict(states: dict[str, Any], inventory_primary: str = "db1") -> dict[str, Any]:
    return topo.topology_verdict(states, inventory_primary, HOSTS)


def test_fresh_inventory_decides() -> None:
    empty = {"exists": False, "record": None}
    result = verdict({h: empty for h in HOSTS})
    assert (result["primary"], result["replicas"], result["errors"]) == ("db1", ["db2", "db3"], [])


def test_healthy_cluster() -> None:
    result = verdict({"db1": primary(), "db2": standby(), "db3": {"exists": False}})
    assert result["primary"] == "db1" and result["errors"] == []


def test_recorded_switchover_is_followed() -> None:
    record = {"primary": "db2", "timeline": 2, "at": "2026-12-02T06:00:00Z"}
    states = {
        "db1": standby(tl=2, record=record),
        "db2": primary(tl=2, record=record, history=[{"timeline": 1, "switch_lsn": "0/6000000"}]),
        "db3": standby(tl=1, lsn="0/5FFFFFF"),  # still on the old timeline, behind the fork
    }
    result = verdict(states)
    assert result["primary"] == "db2" and result["source"] == "record"
    assert result["replicas"] == ["db1", "db3"] and result["errors"] == []


def test_split_brain_refused_naming_both_and_the_fix() -> None:
    record = {"primary": "db2", "timeline": 2, "at": "x"}
    result = verdict(
        {
            "db1": primary(tl=1),
            "db2": primary(tl=2, record=record),
            "db3": standby(tl=2, record=record),
        }
    )
    assert len(result["errors"]) >= 1
    message = result["errors"][0]
    assert "Split brain" in message and "db1" in message and "db2" in message
    assert "rejoin.yml -e host=db1" in message


def test_unrecorded_promotion_of_the_inventory_replica_refused() -> None:
    result = verdict({"db1": None, "db2": primary(tl=2), "db3": standby(tl=2)})
    assert any("adopt" in e and "failover.yml -e target=db2" in e for e in result["errors"]), result


def test_inventory_primary_in_recovery_refused() -> None:
    result = verdict({"db1": standby(), "db2": standby(), "db3": standby()})
    assert any("db1 (inventory) is in recovery" in e for e in result["errors"]), result


def test_replica_past_the_fork_must_rejoin() -> None:
    record = {"primary": "db2", "timeline": 2, "at": "x"}
    states = {
        "db1": standby(tl=1, lsn="0/7000000", fenced=True),  # the old primary, diverged
        "db2": primary(tl=2, record=record, history=[{"timeline": 1, "switch_lsn": "0/6000000"}]),
        "db3": standby(tl=2, record=record),
    }
    result = verdict(states)
    assert len(result["errors"]) == 1
    assert "db1 (fenced by its start guard) cannot stream from db2" in result["errors"][0]
    assert "rejoin.yml -e host=db1" in result["errors"][0]


def test_stopped_former_primary_must_rejoin() -> None:
    record = {"primary": "db2", "timeline": 2, "at": "x"}
    stopped = {
        "exists": True,
        "running": False,
        "standby_signal": False,
        "timeline": 1,
        "system_identifier": SYSID,
        "record": None,
        "control": {"checkpoint_lsn": "0/5000000"},
    }
    result = verdict({"db1": stopped, "db2": primary(tl=2, record=record), "db3": standby(tl=2)})
    assert any("db1 (timeline 1) is stopped with a primary's data" in e for e in result["errors"])


def test_foreign_cluster_left_to_the_postgresql_role() -> None:
    foreign = primary(system_identifier="1111")
    foreign["running"] = False
    result = verdict({"db1": primary(), "db2": foreign, "db3": standby()})
    assert result["errors"] == [] and any("another cluster" in n for n in result["notes"])


def test_newer_timeline_elsewhere_means_an_unrecorded_promotion() -> None:
    stopped_db1 = {
        "exists": True,
        "running": False,
        "standby_signal": False,
        "timeline": 1,
        "system_identifier": SYSID,
        "record": None,
    }
    result = verdict({"db1": stopped_db1, "db2": standby(tl=2), "db3": standby(tl=2)})
    assert any("no playbook recorded" in e for e in result["errors"]), result
