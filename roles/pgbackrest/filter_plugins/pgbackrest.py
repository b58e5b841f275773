"""Filters of the pgbackrest role: validate a pgbackrest.conf structure, render it as INI.

The configuration is a mapping of section name to options, for example::

    {"global": {"repo1-path": "/var/lib/pgbackrest", "start-fast": True},
     "global:archive-push": {"process-max": 2},
     "mdus": {"pg1-path": "/var/lib/postgresql/15/main"}}

Option names are checked against a table of allowed names and types (vars/main.yml of
the role); indexed names (repo2-path, pg3-host) are checked as their base name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_INDEXED = re.compile(r"^(repo|pg)[0-9]+-")
_SECTION = re.compile(r"^[A-Za-z0-9_.-]+(:[a-z-]+)?$")
_SIZE = re.compile(r"^[0-9]+(\.[0-9]+)?\s*(b|kb|kib|mb|mib|gb|gib|tb|tib|pb|pib)?$", re.I)


def _base_name(option: str) -> str:
    return _INDEXED.sub(lambda m: m.group(1) + "-", option)


def _is_int(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, str) and value.isdigit()
    )


def _is_number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float)) or bool(
        isinstance(value, str) and re.fullmatch(r"[0-9]+(\.[0-9]+)?", value)
    )


def _is_str(value: Any) -> bool:
    text = str(value)
    return (
        isinstance(value, (str, int))
        and not isinstance(value, bool)
        and text != ""
        and ("\n" not in text)
    )


_CHECKS: dict[str, tuple[Any, str]] = {
    "bool": (lambda v: isinstance(v, bool), "a boolean (true/false)"),
    "int": (_is_int, "an integer"),
    "time": (_is_number, "a number of seconds"),
    "size": (
        lambda v: _is_int(v) or bool(isinstance(v, str) and _SIZE.match(v)),
        "a size such as 1MiB",
    ),
    "str": (_is_str, "a non-empty one-line string"),
    "list": (lambda v: isinstance(v, list) and all(_is_str(x) for x in v), "a list of strings"),
    "hash": (
        lambda v: isinstance(v, Mapping) and all(_is_str(x) for x in v.values()),
        "a mapping of key to string",
    ),
}


def _type_error(kind: str, value: Any) -> str | None:
    """Why value does not fit type kind, or None when it does."""
    if kind not in _CHECKS:
        raise ValueError(f"unknown option type {kind!r} in the allowed-options table")
    check, wanted = _CHECKS[kind]
    return None if check(value) else wanted


def pgbackrest_config_errors(
    config: Mapping[str, Any], allowed: Mapping[str, Any], variable: str = "pgbackrest.conf"
) -> list[str]:
    """Every problem of a pgbackrest.conf structure, as messages naming the variable.

    allowed maps a base option name to its type ("bool", "int", ...) or to a mapping
    {"type": ..., "choices": [...]}.
    """
    errors: list[str] = []
    if not isinstance(config, Mapping):
        kind = type(config).__name__
        return [f"{variable} must be a mapping of section name to options, got {kind}"]
    for section, options in config.items():
        if not isinstance(section, str) or not _SECTION.match(section):
            errors.append(f"{variable}: section {section!r} is not a stanza or global[:command]")
            continue
        if not isinstance(options, Mapping):
            errors.append(f"{variable}[{section!r}] must be a mapping of option to value")
            continue
        for option, value in options.items():
            where = f"{variable}[{section!r}][{option!r}]"
            spec = allowed.get(_base_name(str(option)))
            if spec is None:
                errors.append(f"{where}: unknown pgBackRest option (typo? see `pgbackrest help`)")
                continue
            kind = spec["type"] if isinstance(spec, Mapping) else spec
            if value is None:
                errors.append(f"{where}: no value; remove the option or give it one")
                continue
            wanted = _type_error(kind, value)
            if wanted:
                errors.append(f"{where}: {value!r} is not {wanted}")
                continue
            choices = spec.get("choices") if isinstance(spec, Mapping) else None
            if choices and str(value) not in [str(c) for c in choices]:
                errors.append(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
    return errors


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "y" if value else "n"
    return str(value)


def pgbackrest_ini(config: Mapping[str, Mapping[str, Any]]) -> str:
    """Render the structure as pgbackrest.conf text (sections and options in given order).

    Booleans become y/n, lists repeat the option once per element, mappings repeat it
    once per key as key=value (pgBackRest's hash options, e.g. tls-server-auth).
    Options whose value is None or an empty list/mapping are left out.
    """
    blocks: list[str] = []
    for section, options in config.items():
        lines = [f"[{section}]"]
        for option, value in options.items():
            if value is None:
                continue
            if isinstance(value, list):
                lines += [f"{option}={_scalar(v)}" for v in value]
            elif isinstance(value, Mapping):
                lines += [f"{option}={k}={_scalar(v)}" for k, v in value.items()]
            else:
                lines.append(f"{option}={_scalar(value)}")
        if len(lines) > 1:
            blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def pgbackrest_indexed(
    entries: list[Mapping[str, Any]], prefix: str, common: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Number a list of option sets: [{"host": "a"}, {"host": "b"}], "pg", {"port": 5432}
    gives {"pg1-host": "a", "pg1-port": 5432, "pg2-host": "b", "pg2-port": 5432}."""
    out: dict[str, Any] = {}
    for index, entry in enumerate(entries, start=1):
        merged = dict(entry)
        for key, value in (common or {}).items():
            merged.setdefault(key, value)
        for key, value in merged.items():
            out[f"{prefix}{index}-{key}"] = value
    return out


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {
            "pgbackrest_config_errors": pgbackrest_config_errors,
            "pgbackrest_ini": pgbackrest_ini,
            "pgbackrest_indexed": pgbackrest_indexed,
        }
