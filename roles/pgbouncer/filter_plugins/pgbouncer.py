"""Filters of the pgbouncer role: client networks from PostgreSQL's pg_hba, server demand.

``pgbouncer_hba``: PgBouncer's own hba admits the networks PostgreSQL admits for the same
users and databases, nothing wider. PgBouncer logs in to PostgreSQL from its own host, so
without this a client refused by PostgreSQL's pg_hba would still reach the data through
PgBouncer. Only PostgreSQL's ``hostssl ... scram-sha-256`` lines are carried over (the
only way PgBouncer authenticates clients here); ``samenet`` and ``samehost`` become the
host's own networks and addresses, since PgBouncer knows neither keyword.

``pgbouncer_server_demand``: how many server connections every PgBouncer may open
towards each PostgreSQL server, with every database host counted as a future primary.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # unit tests without Ansible on the path
    AnsibleFilterError = ValueError  # type: ignore[assignment,misc]


_PG_ONLY_USERS = {"sameuser", "samerole", "samegroup"}


def _split(field: Any) -> list[str]:
    if isinstance(field, (list, tuple)):
        return [str(item).strip() for item in field]
    return [part.strip() for part in str(field).split(",") if part.strip()]


def _interface_networks(interfaces: Iterable[Mapping[str, Any]]) -> tuple[list[str], list[str]]:
    """Networks and addresses of a host from Ansible's interface facts."""
    networks: set[str] = set()
    addresses: set[str] = set()
    for interface in interfaces:
        ipv4 = [interface.get("ipv4") or {}, *interface.get("ipv4_secondaries", [])]
        ipv6 = [item for item in interface.get("ipv6", []) if item.get("scope") != "link"]
        for item in [*ipv4, *ipv6]:
            if not item.get("address"):
                continue
            prefix = item.get("prefix") or item.get("netmask")
            network = ipaddress.ip_interface(f"{item['address']}/{prefix}").network
            networks.add(str(network))
            addresses.add(str(ipaddress.ip_network(item["address"])))
    return sorted(networks), sorted(addresses)


def _networks(address: str, interfaces: Iterable[Mapping[str, Any]]) -> list[str]:
    """PostgreSQL's address field as CIDR networks PgBouncer understands."""
    if address == "all":
        return ["0.0.0.0/0", "::/0"]
    if address in {"samenet", "samehost"}:
        networks, addresses = _interface_networks(interfaces)
        return networks if address == "samenet" else addresses
    try:
        return [str(ipaddress.ip_network(address, strict=False))]
    except ValueError as exc:
        raise AnsibleFilterError(
            f"postgresql_hba_entries address {address!r} cannot be carried to PgBouncer's hba "
            "(it takes CIDR networks, all, samenet or samehost, not host names): write the "
            "network, or set pgbouncer_hba_entries yourself"
        ) from exc


def pgbouncer_hba(
    postgresql_entries: list[Mapping[str, Any]],
    aliases: list[Mapping[str, Any]],
    interfaces: Iterable[Mapping[str, Any]] = (),
) -> list[dict[str, str]]:
    """PgBouncer hba lines (database aliases, user, address) from PostgreSQL's entries.

    ``interfaces``: Ansible's facts of the host's interfaces (ansible_facts[<name>]).
    """
    interfaces = list(interfaces)
    lines: list[dict[str, str]] = []
    for entry in postgresql_entries:
        if entry.get("type") != "hostssl" or entry.get("method") != "scram-sha-256":
            continue
        databases = _split(entry.get("database", ""))
        served = [
            str(alias["name"])
            for alias in aliases
            if "all" in databases or str(alias["dbname"]) in databases
        ]
        if not served:
            continue
        users = _split(entry.get("user", ""))
        odd = [user for user in users if user.startswith(("+", "@")) or user in _PG_ONLY_USERS]
        if odd:
            raise AnsibleFilterError(
                f"postgresql_hba_entries user field {','.join(users)!r}: {', '.join(odd)} "
                "cannot be carried to PgBouncer's hba (group and file references are "
                "PostgreSQL's only); name the users, or set pgbouncer_hba_entries yourself"
            )
        for network in _networks(str(entry.get("address", "")), interfaces):
            lines.append(
                {"database": ",".join(served), "user": ",".join(users), "address": network}
            )
    return lines


def pgbouncer_hba_problems(
    lines: list[Mapping[str, Any]], aliases: list[Mapping[str, Any]]
) -> list[str]:
    """What is wrong with PgBouncer hba lines (empty when they are fine)."""
    names = {str(alias["name"]) for alias in aliases} | {"all"}
    problems = []
    for line in lines:
        fields = [str(line.get(key, "")) for key in ("database", "user", "address")]
        text = " ".join(fields)
        if any(not field or any(ch.isspace() or ch == "#" for ch in field) for field in fields):
            problems.append(f"{text!r}: every field is required, without spaces or '#'")
            continue
        unknown = sorted(set(_split(fields[0])) - names)
        if unknown:
            problems.append(
                f"{text!r}: {', '.join(unknown)} is not an alias of pgbouncer_databases"
            )
        try:
            ipaddress.ip_network(fields[2], strict=False)
        except ValueError:
            problems.append(f"{text!r}: address {fields[2]!r} is not a CIDR network")
    return problems


def pgbouncer_server_demand(
    bouncers: list[Mapping[str, Any]],
    primary_group: list[str],
    replica_group: list[str],
) -> dict[str, dict[str, Any]]:
    """Server connections each database host may have to take from all PgBouncers.

    ``bouncers``: one item per PgBouncer host: ``host``, ``databases`` (its aliases) and
    ``max_db_connections`` (its default cap per alias). An alias of target ``primary``
    counts on every database host (any may be promoted); a ``replica`` alias on the host
    it points at (itself on a replica, else the first replica, else the primary).
    """
    servers = list(primary_group) + [host for host in replica_group if host not in primary_group]
    demand: dict[str, dict[str, Any]] = {host: {"need": 0, "from": []} for host in servers}
    for bouncer in bouncers:
        host = str(bouncer["host"])
        replica_target = host if host in replica_group else (list(replica_group) + servers)[0]
        for alias in bouncer["databases"]:
            cap = int(alias.get("max_db_connections", bouncer["max_db_connections"]))
            targets = servers if alias["target"] == "primary" else [replica_target]
            for server in targets:
                demand[server]["need"] += cap
                demand[server]["from"].append(f"{host}:{alias['name']}={cap}")
    return demand


def pgbouncer_pool_shortfall(
    demand: Mapping[str, Mapping[str, Any]],
    limits: Mapping[str, Mapping[str, Any]],
    other: int,
) -> list[str]:
    """Servers whose max_connections cannot hold the pools plus the reserved slots.

    ``limits``: per server ``max_connections`` and ``superuser_reserved_connections``
    (servers whose max_connections is unknown in this run are left out by the caller).
    """
    problems = []
    for server, wanted in demand.items():
        if server not in limits:
            continue
        available = int(limits[server]["max_connections"])
        reserved = int(limits[server].get("superuser_reserved_connections", 3))
        total = int(wanted["need"]) + int(other) + reserved
        if total > available:
            problems.append(
                f"{server}: max_connections {available} < {total} = "
                f"PgBouncer pools {wanted['need']} "
                f"({', '.join(wanted['from'])}) + pgbouncer_other_connections {other} "
                f"+ superuser_reserved_connections {reserved}"
            )
    return problems


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Any]:
        return {
            "pgbouncer_hba": pgbouncer_hba,
            "pgbouncer_hba_problems": pgbouncer_hba_problems,
            "pgbouncer_server_demand": pgbouncer_server_demand,
            "pgbouncer_pool_shortfall": pgbouncer_pool_shortfall,
        }
