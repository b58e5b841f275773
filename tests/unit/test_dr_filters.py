"""The dr role's decisions: switchover preflight, failover and rejoin refusals, timings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.modload import load_module

dr = load_module("dr_filters", Path(__file__).parents[2] / "roles/dr/filter_plugins/dr.py")
LIMITS = {"max_lag_bytes": 1000, "max_xact_seconds": 30}
VERDICT = {"intended": "db1", "replicas": ["db2", "db3"], "source": "inventory", "errors": []}


def primary(**extra: Any) -> dict[str, Any]:
    return {
        "exists": True,
        "running": True,
        "in_recovery": False,
        "timeline": 1,
        "system_identifier": "7",
        "prepared_xacts": 0,
        "oldest_xact_seconds": 0,
        "replication": [{"application_name": "db2", "lag_bytes": 10}],
        **extra,
    }


def standby(lsn: str = "0/5000000", **extra: Any) -> dict[str, Any]:
    return {
        "exists": True,
        "running": True,
        "in_recovery": True,
        "timeline": 1,
        "system_identifier": "7",
        "receive_lsn": lsn,
        "replay_lsn": lsn,
        "receiver": {"status": "streaming", "sender_host": "db1"},
        **extra,
    }


def test_switchover_preflight_passes_when_all_is_well() -> None:
    states = {"db1": primary(), "db2": standby(), "db3": standby()}
    assert dr.dr_switchover_problems(states, VERDICT, "db2", {}, LIMITS) == []


def test_switchover_refuses_lag_old_transactions_prepared_and_a_dead_receiver() -> None:
    states = {
        "db1": primary(
            replication=[{"application_name": "db2", "lag_bytes": 5000}],
            prepared_xacts=1,
            oldest_xact_seconds=99,
            oldest_xact_pids=["42 app"],
        ),
        "db2": standby(receiver={"status": "stopped", "sender_host": None}),
        "db3": standby(),
    }
    problems = " | ".join(dr.dr_switchover_problems(states, VERDICT, "db2", {}, LIMITS))
    for expected in (
        "lags 5000 bytes",
        "prepared transactions",
        "open for 99 s",
        "42 app",
        "not streaming from db1",
    ):
        assert expected in problems


def test_switchover_needs_a_target_and_every_host() -> None:
    states = {"db1": primary(), "db2": standby(), "db3": None}
    assert "Name the new primary" in dr.dr_switchover_problems(states, VERDICT, "", {}, LIMITS)[0]
    problems = dr.dr_switchover_problems(states, VERDICT, "db2", {"db3": "down"}, LIMITS)
    assert any("Cannot read db3" in p for p in problems)
    assert "already the primary" in dr.dr_switchover_problems(states, VERDICT, "db1", {}, LIMITS)[0]


def test_failover_picks_the_most_advanced_standby() -> None:
    states = {"db1": None, "db2": standby("0/5000000"), "db3": standby("0/6000000")}
    assert dr.dr_candidates(states, ["db2", "db3"]) == ["db3", "db2"]
    assert dr.dr_followers(states, ["db2"], "db3") == ["db2"]
    assert dr.dr_followers(states, ["db3"], "db2") == []  # db3 went further: rejoin


def test_failover_refuses_a_running_primary_unless_a_target_is_named() -> None:
    states = {"db1": primary(), "db2": standby(), "db3": standby()}
    refused = dr.dr_failover_refusals(states, VERDICT, "db2", False, ["db1", "db2", "db3"])
    assert any("is running" in r for r in refused)
    assert dr.dr_failover_refusals(states, VERDICT, "db2", True, ["db1", "db2", "db3"]) == []
    assert "No running standby" in dr.dr_failover_refusals(states, VERDICT, "", False, [])[0]


def test_rejoin_refusals() -> None:
    states = {"db1": primary(), "db2": standby(system_identifier="9"), "db3": None}
    assert "cannot rejoin itself" in dr.dr_rejoin_refusals(states, VERDICT, "db1")[0]
    assert "another cluster" in dr.dr_rejoin_refusals(states, VERDICT, "db2")[0]
    assert "does not answer" in dr.dr_rejoin_refusals(states, VERDICT, "db3")[0]


def test_phases_and_pause() -> None:
    timing = dr.dr_phases({"start": 100.0, "pause": 104.0, "resumed": 110.5, "done": 150.0})
    assert timing["pause_seconds"] == 6.5 and timing["total_seconds"] == 50.0
    assert list(timing["phases"]) == ["start", "pause", "resumed", "done"]
