"""Filter shared by every role's input checks: secrets that are still placeholders.

The example inventory (inventories/production-example) ships its vault with values that
hold the marker ``CHANGE-ME``. A deployment that forgot to replace one would run with a
password everybody can read in this repository, so each role's validate tasks refuse it::

    {{ {'pgbackrest_cipher_pass': pgbackrest_cipher_pass} | mdus_placeholders }}
    -> ['pgbackrest_cipher_pass']

Nested values are walked (a list of users, a dict of passwords, Alertmanager receivers)
and each hit is named by its path, e.g. ``postgresql_users[0].password`` or
``mdus_schema_passwords.mdus_app``. The values themselves never leave the filter.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

MARKER = "CHANGE-ME"


def _walk(value: Any, path: str, marker: str) -> Iterator[str]:
    if isinstance(value, str):
        if marker in value:
            yield path
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}", marker)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]", marker)


def mdus_placeholders(values: Mapping[str, Any], marker: str = MARKER) -> list[str]:
    """Paths of the string values under ``values`` (variable name -> value) that hold
    ``marker``, in the order given."""
    found: list[str] = []
    for name, value in values.items():
        found.extend(_walk(value, str(name), marker))
    return found


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {"mdus_placeholders": mdus_placeholders}
