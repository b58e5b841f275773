"""topology_verdict: which database host is the primary, from the hosts' real state.

Input: the state of every database host (mdus_pg_state results; None when unreachable),
the intended primary (the newest topology record written by the DR playbooks, else the
inventory's primary group) and the database hosts in inventory order. Output: the
primary, the replicas, and one short message per problem, naming the hosts and the
playbook that fixes it. Pure function: unit-tested in tests/unit/test_topology.py.
"""

from __future__ import annotations

from typing import Any

FIX_REJOIN = "playbooks/rejoin.yml -e host={host}"
FIX_FAILOVER = "playbooks/failover.yml -e target={host}"


def lsn(text: str | None) -> int | None:
    """'16/B374D848' -> int; None stays None."""
    if not text:
        return None
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def newest_record(states: dict[str, Any]) -> dict[str, Any] | None:
    records = [
        s["record"]
        for s in states.values()
        if s and isinstance(s.get("record"), dict) and s["record"].get("primary")
    ]
    if not records:
        return None
    return max(records, key=lambda r: (int(r.get("timeline", 0)), str(r.get("at", ""))))


def _timeline(state: dict[str, Any]) -> int:
    return int(state.get("timeline") or 0)


def _position(state: dict[str, Any]) -> int | None:
    """How far this host's WAL goes, as far as it can be read."""
    for key in ("replay_lsn", "receive_lsn", "current_lsn"):
        if state.get(key):
            return lsn(state[key])
    control = state.get("control") or {}
    return lsn(control.get("min_recovery_lsn")) or lsn(control.get("checkpoint_lsn"))


def _can_follow(replica: dict[str, Any], primary: dict[str, Any]) -> str | None:
    """None when the replica can stream from the primary, else why not."""
    r_tl, p_tl = _timeline(replica), _timeline(primary)
    if r_tl in (p_tl, 0):
        return None
    if r_tl > p_tl:
        return f"is on timeline {r_tl}, newer than the primary's {p_tl}"
    fork = next(
        (lsn(h["switch_lsn"]) for h in primary.get("history") or [] if int(h["timeline"]) == r_tl),
        None,
    )
    position = _position(replica)
    if fork is None:
        return f"is on timeline {r_tl}, which is not in the primary's history (timeline {p_tl})"
    if position is not None and fork is not None and position > fork:
        return (
            f"went past the fork of timeline {r_tl} at {_fmt(fork)} (it is at "
            f"{_fmt(position)}): it has WAL the primary never had"
        )
    return None


def _fmt(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


def _describe(host: str, states: dict[str, Any]) -> str:
    return f"{host} (timeline {_timeline(states[host])})"


def _split_brain(intended: str, source: str, ours: dict[str, Any], running: list[str]) -> list[str]:
    if len(running) < 2:
        return []
    stale = [h for h in running if h != intended] or running[1:]
    return [
        "Split brain: "
        + " and ".join(_describe(h, ours) for h in running)
        + f" are all out of recovery; the intended primary is {intended} ({source}). "
        + "Rejoin the stale one: "
        + "; ".join(FIX_REJOIN.format(host=h) for h in stale)
        + "."
    ]


def _intended_problems(
    intended: str, source: str, ours: dict[str, Any], running: list[str], stopped: list[str]
) -> list[str]:
    """Is the intended primary what the hosts say?"""
    state = ours.get(intended)
    who = f"{intended} ({source})"
    if state is None:
        others = running or stopped
        hint = (
            f"adopt {others[0]} with {FIX_FAILOVER.format(host=others[0])}"
            if others
            else f"run {FIX_FAILOVER.format(host='<replica>')}"
        )
        return [f"The intended primary {who} has no cluster or cannot be read; {hint}."]
    if state.get("running") and state.get("in_recovery"):
        if running:
            return [
                f"{who} is in recovery while {running[0]} is a running primary that no "
                f"switchover or failover recorded: adopt it with "
                f"{FIX_FAILOVER.format(host=running[0])}, or make it a replica with "
                f"{FIX_REJOIN.format(host=running[0])}."
            ]
        return [
            f"The intended primary {who} is in recovery and no host is a primary: "
            f"promote one with {FIX_FAILOVER.format(host=intended)}."
        ]
    if not state.get("running") and state.get("standby_signal"):
        fenced = " (fenced by its start guard)" if state.get("fenced") else ""
        return [
            f"The intended primary {who} holds a standby{fenced}: promote a host with "
            f"{FIX_FAILOVER.format(host='<host>')}."
        ]
    problems = []
    newer = [h for h, s in ours.items() if h != intended and _timeline(s) > _timeline(state)]
    if newer:
        problems.append(
            f"{_describe(intended, ours)} is the intended primary ({source}) but "
            + ", ".join(_describe(h, ours) for h in newer)
            + " went further: a promotion happened that no playbook recorded. Adopt it with "
            f"{FIX_FAILOVER.format(host=newer[0])}, or rebuild it with "
            f"{FIX_REJOIN.format(host=newer[0])}."
        )
    if len(running) == 1 and running[0] != intended:
        problems.append(
            f"{_describe(running[0], ours)} is a running primary but the intended primary is "
            f"{who}: adopt it with {FIX_FAILOVER.format(host=running[0])}, or make it a "
            f"replica with {FIX_REJOIN.format(host=running[0])}."
        )
    return problems


def _replica_problems(primary: str, replicas: list[str], ours: dict[str, Any]) -> list[str]:
    problems = []
    for host in replicas:
        state = ours.get(host)
        if state is None or (not state.get("standby_signal") and not state.get("in_recovery")):
            continue  # absent, foreign or a primary: reported elsewhere
        why = _can_follow(state, ours[primary])
        if why:
            fenced = " (fenced by its start guard)" if state.get("fenced") else ""
            problems.append(
                f"Replica {host}{fenced} cannot stream from {primary}: it {why}. "
                f"Run {FIX_REJOIN.format(host=host)}."
            )
    return problems


def topology_verdict(
    states: dict[str, Any], inventory_primary: str, db_hosts: list[str]
) -> dict[str, Any]:
    record = newest_record(states)
    intended = record["primary"] if record else inventory_primary
    source = "record" if record else "inventory"
    result: dict[str, Any] = {
        "primary": intended,
        "replicas": [h for h in db_hosts if h != intended],
        "intended": intended,
        "source": source,
        "errors": [],
        "notes": [],
    }
    if intended not in db_hosts:
        result["errors"].append(
            f"The intended primary {intended} ({source}) is not a database host of the "
            "inventory: add it back or run playbooks/failover.yml."
        )
        return result
    result["notes"] += [
        f"{h} is unreachable: its state is unknown." for h in db_hosts if states.get(h) is None
    ]
    existing = {h: s for h, s in states.items() if s and s.get("exists")}
    if not existing:  # nothing installed yet: the inventory decides
        return result
    sysid = (existing.get(intended) or next(iter(existing.values()))).get("system_identifier")
    ours = {h: s for h, s in existing.items() if s.get("system_identifier") == sysid}
    result["notes"] += [
        f"{h} holds another cluster (system identifier {s.get('system_identifier')}); "
        "the postgresql role decides."
        for h, s in existing.items()
        if h not in ours
    ]
    running = sorted(
        h for h, s in ours.items() if s.get("running") and s.get("in_recovery") is False
    )
    stopped = sorted(
        h for h, s in ours.items() if not s.get("running") and not s.get("standby_signal")
    )
    errors = _split_brain(intended, source, ours, running)
    errors += _intended_problems(intended, source, ours, running, stopped)
    errors += [
        f"{_describe(h, ours)} is stopped with a primary's data (no standby.signal): it is a "
        f"former primary; make it a replica with {FIX_REJOIN.format(host=h)}."
        for h in stopped
        if h != intended
    ]
    if not errors:
        errors = _replica_problems(intended, result["replicas"], ours)
    result["errors"] = errors
    return result


def topology_states(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Registered loop results of mdus_pg_state -> {host: state or None (not read)}."""
    return {r["item"]: r.get("state") for r in results}


def topology_unread(results: list[dict[str, Any]]) -> dict[str, str]:
    """Hosts whose state could not be read, with the first line of the reason."""
    return {
        r["item"]: (str(r.get("msg") or "unreachable").splitlines() or ["unreachable"])[0][:160]
        for r in results
        if r.get("state") is None
    }


class FilterModule:
    """Ansible filters of the topology role."""

    def filters(self) -> dict[str, Any]:
        return {
            "topology_verdict": topology_verdict,
            "topology_states": topology_states,
            "topology_unread": topology_unread,
        }
