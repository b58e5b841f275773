"""Filters of the pgbackrest role: build, validate and render pgbackrest.conf; read `info`.

The configuration is a mapping of section name to options, for example::

    {"global": {"repo1-path": "/var/lib/pgbackrest", "start-fast": True},
     "global:archive-push": {"process-max": 2},
     "mdus": {"pg1-path": "/var/lib/postgresql/15/main"}}

pgbackrest_config builds it for one host from the role's variables; option names are
checked against a table of allowed names and types (vars/main.yml of the role), indexed
names (repo2-path, pg3-host) as their base name; pgbackrest_ini renders it.
pgbackrest_info_status reads the answer of `pgbackrest --output=json info`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

_INDEXED = re.compile(r"^(repo|pg)[0-9]+-")
_SECTION = re.compile(r"^[A-Za-z0-9_.-]+(:[a-z-]+)?$")
_JSON_LIST = re.compile(r"^\s*\[")
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


# Values the bool filter of Ansible 2.19 accepts (lower-cased); anything else is refused.
_TRUE = {"yes", "on", "true", "1"}
_FALSE = {"no", "off", "false", "0"}


def _as_bool(name: str, value: Any) -> bool:
    text = str(value).lower() if isinstance(value, (str, int)) else None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"pgbackrest_config: {name} must be a boolean, got {value!r}")


def _as_int(name: str, value: Any) -> int:
    if not isinstance(value, bool) and isinstance(value, (int, float, str)):
        try:
            return int(value)
        except (ValueError, OverflowError):
            pass
    raise ValueError(f"pgbackrest_config: {name} must be an integer, got {value!r}")


def _as_mapping(name: str, value: Any) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    raise ValueError(f"pgbackrest_config: {name} must be a mapping, got {type(value).__name__}")


def _as_list(name: str, value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value]
    raise ValueError(f"pgbackrest_config: {name} must be a list, got {type(value).__name__}")


def _as_repos(name: str, value: Any) -> list[dict[str, Any]]:
    """The repositories as given: each a mapping with index (1-256, each once), host, path
    and optional options (a mapping of option names without the repoN- prefix)."""
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"pgbackrest_config: {name} must be a non-empty list of repositories")
    repos: list[dict[str, Any]] = []
    for entry in value:
        repo = dict(_as_mapping(name, entry))
        unknown = sorted(set(repo) - {"index", "host", "path", "options"})
        if unknown or not {"index", "host", "path"} <= set(repo):
            raise ValueError(
                f"pgbackrest_config: {name} entries take index, host, path and options, got {repo}"
            )
        repo["index"] = _as_int(f"{name}.index", repo["index"])
        repo["options"] = dict(_as_mapping(f"{name}.options", repo.get("options") or {}))
        repos.append(repo)
    indexes = [repo["index"] for repo in repos]
    if len(set(indexes)) != len(indexes) or not all(1 <= i <= 256 for i in indexes):
        raise ValueError(f"pgbackrest_config: {name} indexes must be distinct, 1-256: {indexes}")
    return sorted(repos, key=lambda repo: repo["index"])


# ConfigInputs' field types (annotations, as text) and how a value is turned into one.
_COERCE: dict[str, Callable[[str, Any], Any]] = {
    "bool": _as_bool,
    "int": _as_int,
    "Mapping[str, Any]": _as_mapping,
    "list[str]": _as_list,
    "list[Mapping[str, Any]]": _as_repos,
}


@dataclass(frozen=True)
class ConfigInputs:
    """The inputs of one host's pgbackrest.conf: the role variable pgbackrest_<name> for
    every name below except the first five, which the role derives (vars/main.yml)."""

    repository: bool  # this host is a repository host (else a database host)
    host: str  # inventory name of this host
    db_hosts: list[str]  # database hosts, primary first: pg1, pg2, ... on the repository host
    # every repository: {"index": 1, "host": <repository host>, "path": ..., "options": {}}
    # (options: e.g. {"type": "s3", "s3-bucket": ...}, written on its repository host only)
    repos: list[Mapping[str, Any]]
    log_path: str
    stanza: str
    process_max: int
    compress_type: str
    compress_level: int
    tls_port: int
    tls_ca_file: str
    tls_cert_file: str
    tls_key_file: str
    tls_cn_prefix: str  # a peer's certificate CN is this prefix + its inventory name
    cipher_type: str
    retention_full: int
    retention_diff: int
    repo2_retention_full: int
    start_fast: bool
    backup_standby: bool
    archive_async: bool
    spool_path: str
    pg_path: str
    pg_port: int
    pg_socket_path: str
    # database host -> its own path/port/socket-path where its inventory sets them (the
    # repository host's pgN); the others get pg_path, pg_port, pg_socket_path
    db_pg: Mapping[str, Any]
    global_options: Mapping[str, Any]
    stanza_options: Mapping[str, Any]
    command_options: Mapping[str, Any]

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> ConfigInputs:
        """Check every input is given (and no other), turn booleans and integers given as
        strings ("yes", "8432") into their type; other strings are taken as they are."""
        names = [field.name for field in fields(cls)]
        missing = [name for name in names if name not in settings]
        unknown = sorted(str(name) for name in settings if name not in names)
        if missing or unknown:
            raise ValueError(
                f"pgbackrest_config: missing inputs {missing}, unknown inputs {unknown}"
            )
        values = {}
        for field in fields(cls):
            coerce = _COERCE.get(str(field.type))
            value = settings[field.name]
            values[field.name] = coerce(field.name, value) if coerce else value
        return cls(**values)


def _db_pg(db_pg: Mapping[str, Any], host: str) -> dict[str, Any]:
    """A database host's own PostgreSQL location (path, port, socket-path) as given."""
    own = dict(_as_mapping(f"db_pg[{host}]", db_pg.get(host) or {}))
    unknown = sorted(set(own) - {"path", "port", "socket-path"})
    if unknown:
        raise ValueError(f"pgbackrest_config: db_pg[{host}] has unknown keys {unknown}")
    if "port" in own:
        own["port"] = _as_int(f"db_pg[{host}].port", own["port"])
    return own


def pgbackrest_command_sections(command_options: Mapping[str, Any]) -> dict[str, Any]:
    """{"archive-push": {"process-max": 4}} gives {"global:archive-push": {"process-max": 4}}."""
    options = _as_mapping("command_options", command_options)
    return {f"global:{command}": values for command, values in options.items()}


def pgbackrest_config(settings: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The whole pgbackrest.conf of one host as a structure (render it with pgbackrest_ini).

    settings maps every field of ConfigInputs to its value. [global] gets the options of
    every host, then a repository host's (the repositories it holds, with their cipher
    type, options and retention, backup options, tls-server-auth for every database
    host's CN) or a database host's (async archiving, every repository through the TLS
    server of the host that holds it, tls-server-auth for each repository host's CN), then
    pgbackrest_global_options. The stanza section gets every database host as pgN over
    TLS on a repository host, this host's
    PostgreSQL as pg1 on a database host, then pgbackrest_stanza_options. Each command of
    pgbackrest_command_options becomes a section global:<command>. Later options replace
    earlier ones of the same name in place; new ones come last.
    """
    s = ConfigInputs.from_mapping(settings)
    tls_files = {"ca-file": s.tls_ca_file, "cert-file": s.tls_cert_file, "key-file": s.tls_key_file}
    to_peer = {"host-type": "tls", "host-port": s.tls_port}
    to_peer.update({f"host-{name}": path for name, path in tls_files.items()})
    common = {
        "log-level-console": "warn",
        "log-level-file": "info",
        "log-path": s.log_path,
        "process-max": s.process_max,
        "compress-type": s.compress_type,
        "compress-level": s.compress_level,
        "tls-server-address": "*",
        "tls-server-port": s.tls_port,
    }
    common.update({f"tls-server-{name}": path for name, path in tls_files.items()})
    own: dict[str, Any] = {}
    if s.repository:
        mine = [repo for repo in s.repos if repo["host"] == s.host]
        for repo in mine:
            n = repo["index"]
            own |= {f"repo{n}-path": repo["path"], f"repo{n}-cipher-type": s.cipher_type}
            own |= {f"repo{n}-{name}": value for name, value in repo["options"].items()}
        held = {repo["index"] for repo in mine}
        if 1 in held:
            own |= {
                "repo1-retention-full": s.retention_full,
                "repo1-retention-diff": s.retention_diff,
            }
        own |= {
            "start-fast": s.start_fast,
            "backup-standby": s.backup_standby,
            "tls-server-auth": {f"{s.tls_cn_prefix}{host}": s.stanza for host in s.db_hosts},
        }
        if 2 in held:
            own["repo2-retention-full"] = s.repo2_retention_full
        pg = {"path": s.pg_path, "port": s.pg_port, "socket-path": s.pg_socket_path}
        stanza = pgbackrest_indexed(
            [{"host": host} | to_peer | pg | _db_pg(s.db_pg, host) for host in s.db_hosts], "pg"
        )
    else:
        repo_hosts = list(dict.fromkeys(repo["host"] for repo in s.repos))
        own = {
            "archive-async": s.archive_async,
            "spool-path": s.spool_path,
            "tls-server-auth": {f"{s.tls_cn_prefix}{host}": s.stanza for host in repo_hosts},
        }
        for repo in s.repos:
            n = repo["index"]
            own.update({f"repo{n}-path": repo["path"], f"repo{n}-host": repo["host"]})
            own.update({f"repo{n}-{name}": value for name, value in to_peer.items()})
        stanza = {"pg1-path": s.pg_path, "pg1-port": s.pg_port, "pg1-socket-path": s.pg_socket_path}
    config = {
        "global": common | own | dict(s.global_options),
        s.stanza: stanza | dict(s.stanza_options),
    }
    config.update(pgbackrest_command_sections(s.command_options))
    return config


def pgbackrest_info_status(stdout: str, stderr: str = "", rc: int = 0) -> dict[str, Any]:
    """What `pgbackrest --stanza=<stanza> --output=json info` answered, for one stanza.

    Returns {"code": ..., "message": ..., "backups": ...}: pgBackRest's status code of the
    stanza (0 ok, 1 missing stanza path, 2 no valid backups, 3 missing stanza data, ...),
    its status message followed by each repository's (the detail of an error is there)
    and the number of backups. Without a JSON answer (rc not 0, or no JSON list on
    stdout) the code is -1 and the message is stderr.
    """
    if int(rc) == 0 and _JSON_LIST.match(stdout or ""):
        try:
            answer = json.loads(stdout)
        except ValueError:
            answer = None
        if isinstance(answer, list) and answer and isinstance(answer[0], Mapping):
            stanza = answer[0]
            statuses = [stanza.get("status") or {}]
            statuses += [repo.get("status") or {} for repo in stanza.get("repo") or []]
            messages = [str(status["message"]) for status in statuses if status.get("message")]
            return {
                "code": int(statuses[0].get("code", -1)),
                "message": " ".join(messages),
                "backups": len(stanza.get("backup") or []),
            }
    return {"code": -1, "message": (stderr or "").strip() or "no answer", "backups": 0}


class FilterModule:
    """Ansible filter plugin entry point."""

    def filters(self) -> dict[str, Any]:
        return {
            "pgbackrest_command_sections": pgbackrest_command_sections,
            "pgbackrest_config": pgbackrest_config,
            "pgbackrest_config_errors": pgbackrest_config_errors,
            "pgbackrest_info_status": pgbackrest_info_status,
            "pgbackrest_ini": pgbackrest_ini,
        }
