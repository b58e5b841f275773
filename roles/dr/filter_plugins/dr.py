"""Filters of the dr role: phase timings of a switchover, failover or rejoin."""

from __future__ import annotations

from typing import Any


def dr_phases(times: dict[str, float]) -> dict[str, Any]:
    """Seconds from the start to every phase, in order, and the write pause (PAUSE to
    RESUME) when there was one."""
    start = float(times.get("start", min(times.values(), default=0.0)))
    ordered = sorted(((float(v) - start, k) for k, v in times.items()))
    phases = {name: round(offset, 2) for offset, name in ordered}
    result: dict[str, Any] = {
        "phases": phases,
        "total_seconds": round(max(phases.values(), default=0.0), 2),
    }
    if "pause" in times and "resumed" in times:
        result["pause_seconds"] = round(float(times["resumed"]) - float(times["pause"]), 2)
    return result


def _lsn(text: str | None) -> int:
    if not text:
        return 0
    high, _, low = str(text).partition("/")
    return (int(high, 16) << 32) + int(low, 16)


def _received(state: dict[str, Any]) -> int:
    return max(_lsn(state.get("receive_lsn")), _lsn(state.get("replay_lsn")))


def dr_candidates(states: dict[str, Any], hosts: list[str]) -> list[str]:
    """Running standbys among hosts, the most advanced first (timeline, then WAL received)."""
    standbys = [
        h
        for h in hosts
        if (states.get(h) or {}).get("running") and (states.get(h) or {}).get("in_recovery")
    ]
    return sorted(
        standbys,
        key=lambda h: (int(states[h].get("timeline") or 0), _received(states[h])),
        reverse=True,
    )


def dr_followers(states: dict[str, Any], hosts: list[str], target: str) -> list[str]:
    """Hosts with a cluster of the target's system that received no WAL beyond what the
    target had: they can stream from it once promoted. The others must rejoin."""
    t_state = states.get(target) or {}
    limit = _received(t_state)
    return [
        h
        for h in hosts
        if (states.get(h) or {}).get("exists")
        and states[h].get("system_identifier") == t_state.get("system_identifier")
        and _received(states[h]) <= limit
    ]


def dr_switchover_problems(
    states: dict[str, Any],
    verdict: dict[str, Any],
    target: str,
    unread: dict[str, str],
    limits: dict[str, Any],
) -> list[str]:
    """Every reason to refuse a switchover to `target`, one short message each."""
    primary, hosts = verdict["intended"], verdict["replicas"] + [verdict["intended"]]
    problems = list(verdict["errors"])
    if not target:
        return [
            *problems,
            f"Name the new primary: -e target=HOST (one of {', '.join(sorted(hosts))}).",
        ]
    if target not in hosts:
        return [*problems, f"{target} is not a database host of the inventory."]
    if target == primary:
        return [*problems, f"{target} is already the primary."]
    if unread:
        problems.append(
            f"Cannot read {', '.join(sorted(unread))}: a switchover needs every "
            "database host (playbooks/failover.yml is for a primary that is gone)."
        )
    t_state, p_state = states.get(target) or {}, states.get(primary) or {}
    if not (t_state.get("running") and t_state.get("in_recovery")):
        problems.append(f"{target} is not a running standby.")
    else:
        receiver = t_state.get("receiver") or {}
        if receiver.get("status") != "streaming" or receiver.get("sender_host") != primary:
            problems.append(
                f"{target} is not streaming from {primary} (WAL receiver: "
                f"{receiver.get('status') or 'stopped'}"
                f"{' from ' + receiver['sender_host'] if receiver.get('sender_host') else ''})."
            )
        if p_state and t_state.get("timeline") != p_state.get("timeline"):
            problems.append(
                f"{target} is on timeline {t_state.get('timeline')}, the primary on "
                f"{p_state.get('timeline')}."
            )
    lag = next(
        (
            r.get("lag_bytes")
            for r in p_state.get("replication") or []
            if r.get("application_name") == target
        ),
        None,
    )
    if lag is not None and float(lag) > float(limits["max_lag_bytes"]):
        problems.append(
            f"{target} lags {int(float(lag))} bytes behind {primary} "
            f"(dr_max_lag_bytes {limits['max_lag_bytes']}): let it catch up."
        )
    if int(p_state.get("prepared_xacts") or 0) > 0:
        problems.append(
            f"{primary} has {p_state['prepared_xacts']} prepared transactions: "
            "COMMIT PREPARED or ROLLBACK PREPARED them first."
        )
    oldest = float(p_state.get("oldest_xact_seconds") or 0)
    if oldest > float(limits["max_xact_seconds"]):
        problems.append(
            f"{primary} has a transaction open for {oldest:.0f} s "
            f"(dr_max_xact_seconds {limits['max_xact_seconds']}): "
            f"{'; '.join(p_state.get('oldest_xact_pids') or [])}."
        )
    return problems


def dr_failover_refusals(
    states: dict[str, Any],
    verdict: dict[str, Any],
    target: str,
    named: bool,
    reachable: list[str],
) -> list[str]:
    """Every reason a failover to `target` (named, or chosen) cannot go ahead."""
    primary = verdict["intended"]
    hosts = verdict["replicas"] + [primary]
    old, t_state = states.get(primary), states.get(target) if target else None
    if not target:
        return [
            f"No running standby to promote ({', '.join(reachable) or 'no host'} answer"
            "); name one with -e target=HOST."
        ]
    if target not in hosts:
        return [f"{target} is not a database host of the inventory."]
    if t_state is None:
        return [f"{target} does not answer."]
    problems = []
    if not t_state.get("running"):
        problems.append(f"{target} is not running.")
    if (
        old
        and old.get("running")
        and old.get("in_recovery") is False
        and target != primary
        and not named
    ):
        problems.append(
            f"The primary {primary} is running: name the new primary with "
            "-e target=HOST to fence it and fail over anyway, or use "
            "playbooks/switchover.yml (no data lost)."
        )
    if target == primary and t_state.get("in_recovery") is False:
        problems.append(f"{target} is the primary already ({verdict['source']}).")
    others = [
        h
        for h, s in states.items()
        if s and s.get("running") and s.get("in_recovery") is False and h not in (primary, target)
    ]
    if others:
        problems.append(
            f"{', '.join(others)} also run as primaries: rejoin them first (playbooks/rejoin.yml)."
        )
    return problems


def dr_rejoin_refusals(states: dict[str, Any], verdict: dict[str, Any], host: str) -> list[str]:
    """Every reason `host` cannot be rejoined to the current primary."""
    primary = verdict["intended"]
    hosts = verdict["replicas"] + [primary]
    if not host:
        return ["Name the host to rejoin: -e host=HOST."]
    if host not in hosts:
        return [f"{host} is not a database host of the inventory."]
    if host == primary:
        return [f"{host} is the primary ({verdict['source']}); it cannot rejoin itself."]
    h_state, p_state = states.get(host), states.get(primary) or {}
    problems = []
    if h_state is None:
        problems.append(f"{host} does not answer: start its machine first.")
    if not p_state.get("running") or p_state.get("in_recovery") is not False:
        problems.append(
            f"The primary {primary} is not a running primary: run playbooks/failover.yml first."
        )
    if (
        h_state
        and h_state.get("exists")
        and p_state
        and h_state.get("system_identifier") != p_state.get("system_identifier")
    ):
        problems.append(
            f"{host} holds another cluster (system identifier "
            f"{h_state.get('system_identifier')}): rebuild it with site.yml "
            "-e postgresql_replica_rebuild=true."
        )
    return problems


class FilterModule:
    """Ansible filters of the dr role."""

    def filters(self) -> dict[str, Any]:
        return {
            "dr_phases": dr_phases,
            "dr_candidates": dr_candidates,
            "dr_followers": dr_followers,
            "dr_switchover_problems": dr_switchover_problems,
            "dr_failover_refusals": dr_failover_refusals,
            "dr_rejoin_refusals": dr_rejoin_refusals,
        }
