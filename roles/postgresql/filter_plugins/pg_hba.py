"""Refusals for pg_hba.conf and pg_ident.conf entries, as one list of messages.

A pure function, unit-tested in tests/unit/test_pg_hba_filter.py and used by
tasks/validate.yml (one assert for every entry, instead of a task round per entry and
check). Each message names the entry by its index and the fix, in the words the role's
earlier per-entry checks used.
"""

from __future__ import annotations

import json
import re
from typing import Any

# pg_hba.conf splits these fields on whitespace; the comment and options may hold spaces.
HBA_SPLIT_FIELDS = ("type", "database", "user", "address", "method")
HBA_METHODS = {"local": ("peer",), "hostssl": ("scram-sha-256", "cert")}


def _hba_line_refusal(index: int, entry: dict[str, Any]) -> str | None:
    fields = {key: str(value) for key, value in entry.items()}
    breaks = [key for key, value in fields.items() if re.search(r"[\r\n]", value)]
    spaces = [key for key in HBA_SPLIT_FIELDS if re.search(r"\s", fields.get(key, ""))]
    hashes = [key for key, value in fields.items() if key != "comment" and "#" in value]
    if not (breaks or spaces or hashes):
        return None
    reasons = []
    if breaks:
        reasons.append(
            f"{', '.join(breaks)} holds a line break, which would start a line of its own in "
            "pg_hba.conf (one entry is one line; keep the comment on one line)."
        )
    if spaces:
        reasons.append(
            f"{', '.join(spaces)} holds whitespace, where pg_hba.conf splits fields (list "
            "several names with commas and no spaces, e.g. user: mdus_app,mdus_readonly)."
        )
    if hashes:
        reasons.append(
            f'{", ".join(hashes)} holds a "#", after which pg_hba.conf reads the rest of the '
            "line as a comment (remove it; only comment may hold one)."
        )
    return (
        f"postgresql_hba_entries[{index}] {json.dumps(entry)} is refused: "
        f"{' '.join(reasons)} Fix that entry in postgresql_hba_entries."
    )


def _hba_method_refusal(index: int, entry: dict[str, Any]) -> str | None:
    kind, method = entry.get("type"), entry.get("method")
    allowed = HBA_METHODS.get(str(kind), ())
    if method in allowed and (kind == "local" or str(entry.get("address") or "")):
        return None
    return (
        f"postgresql_hba_entries[{index}] {json.dumps(entry)} is refused: local lines must use "
        "peer, hostssl lines must use scram-sha-256 or cert and give an address. Fix that "
        "entry in postgresql_hba_entries."
    )


def _ident_refusal(index: int, entry: dict[str, Any]) -> str | None:
    bad = [
        key for key, value in entry.items() if isinstance(value, str) and re.search(r"[\s#]", value)
    ]
    if not bad:
        return None
    return (
        f"postgresql_ident_entries[{index}] {json.dumps(entry)} is refused: {', '.join(bad)} "
        'holds whitespace, a line break or a "#", which pg_ident.conf reads as a field '
        "separator, a new line or a comment. Fix that entry in postgresql_ident_entries."
    )


def pg_hba_refusals(
    hba_entries: list[dict[str, Any]], ident_entries: list[dict[str, Any]]
) -> list[str]:
    """Every refusal of the entries: a field that adds or cuts a line, a method or type the
    platform does not allow (local: peer; hostssl: scram-sha-256 or cert, with an address)."""
    refusals = [_hba_line_refusal(i, entry) for i, entry in enumerate(hba_entries)]
    refusals += [_ident_refusal(i, entry) for i, entry in enumerate(ident_entries)]
    refusals += [_hba_method_refusal(i, entry) for i, entry in enumerate(hba_entries)]
    return [message for message in refusals if message]


class FilterModule:
    """Ansible filter: pg_hba_refusals."""

    def filters(self) -> dict[str, Any]:
        return {"pg_hba_refusals": pg_hba_refusals}
