"""Filter of the pgbouncer role: can PgBouncer's lookup role log in to a database host?

PgBouncer logs in to PostgreSQL as ``pgbouncer_auth_user`` with its own TLS client
certificate (CN ``pgbouncer_tls_cn``, pgbouncer@<inventory name>) to run the auth_query. That works
only when the database host's pg_hba (``postgresql_hba_entries``) sends that user to
``cert`` with an ident map, and the map (``postgresql_ident_entries``) turns the
certificate's CN into the lookup role. Without them every client login through PgBouncer
fails, and nothing says why until the first application connects.

``pgbouncer_auth_errors`` reads one database host's entries the way PostgreSQL does (the
first hostssl line matching the user and the database decides) and returns one message
per problem, naming the variable and the fix. Client addresses are not compared: that a
line's address covers the PgBouncer host is left to the operator (samenet, a subnet).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

_MAP = re.compile(r"(?:^|\s)map=(\S+)")


def _names(field: Any) -> list[str]:
    items = field if isinstance(field, (list, tuple)) else str(field).split(",")
    return [str(name).strip() for name in items]


def _first_line(hba: Sequence[Mapping[str, Any]], user: str, dbname: str) -> Mapping | None:
    """The first TCP line PostgreSQL would pick for ``user`` on ``dbname`` over TLS."""
    for entry in hba:
        if str(entry.get("type", "")) not in ("hostssl", "host"):
            continue
        if not {user, "all"} & set(_names(entry.get("user", ""))):
            continue
        if not {dbname, "all"} & set(_names(entry.get("database", ""))):
            continue
        return entry
    return None


def _ident_maps(ident: Sequence[Mapping[str, Any]], name: str, system_user: str, user: str) -> bool:
    for entry in ident:
        if str(entry.get("map", "")) != name or str(entry.get("db_user", "")) not in (user, "all"):
            continue
        pattern = str(entry.get("system_user", ""))
        if pattern == system_user or (
            pattern.startswith("/") and re.search(pattern[1:], system_user) is not None
        ):
            return True
    return False


def pgbouncer_auth_errors(
    hba: Sequence[Mapping[str, Any]],
    ident: Sequence[Mapping[str, Any]],
    *,
    target: str,
    pgbouncer_cn: str,
    auth_user: str,
    dbnames: Sequence[str],
) -> list[str]:
    """Why PgBouncer with certificate CN ``pgbouncer_cn`` cannot log in to ``target`` as
    ``auth_user`` for each of ``dbnames``, given ``target``'s pg_hba and pg_ident entries."""
    example = (
        f"{{type: hostssl, database: all, user: {auth_user}, address: <the PgBouncer hosts' "
        "network>, method: cert, options: map=pgbouncer}"
    )
    errors: list[str] = []
    maps: list[str] = []
    for dbname in dbnames:
        line = _first_line(hba, auth_user, dbname)
        if line is None:
            errors.append(
                f"postgresql_hba_entries of {target} has no hostssl line for {auth_user} on "
                f"database {dbname}: add {example} before the scram-sha-256 lines"
            )
        elif line.get("method") != "cert":
            errors.append(
                f"the first postgresql_hba_entries line of {target} for {auth_user} on database "
                f"{dbname} uses {line.get('method')} (user {line.get('user')}, address "
                f"{line.get('address', '')}), but PgBouncer logs in with its TLS certificate: "
                f"put {example} before it"
            )
        elif not _MAP.search(str(line.get("options", ""))):
            errors.append(
                f"the postgresql_hba_entries cert line of {target} for {auth_user} has no "
                f"ident map (PgBouncer's certificate CN is not {auth_user}): add "
                "options: map=pgbouncer"
            )
        else:
            name = _MAP.search(str(line.get("options", ""))).group(1)  # type: ignore[union-attr]
            if name not in maps:
                maps.append(name)
    errors.extend(
        f"postgresql_ident_entries of {target} does not map PgBouncer's certificate (CN "
        f"{pgbouncer_cn}) to {auth_user} in map {name}: add {{map: {name}, system_user: "
        f"{pgbouncer_cn}, db_user: {auth_user}}} (one line per PgBouncer host)"
        for name in maps
        if not _ident_maps(ident, name, pgbouncer_cn, auth_user)
    )
    return errors


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"pgbouncer_auth_errors": pgbouncer_auth_errors}
