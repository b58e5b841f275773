"""Compile each Jinja template once, not once per forked worker.

Ansible forks a worker per host and task, and every worker compiles every template it
renders (task arguments, conditions, role variables that are templates) from scratch:
Jinja parses it, generates Python and compiles that. On the 4-host lab re-run the workers
compiled 4571 templates, 414 of them distinct, ~8 s of the workers' CPU out of ~32 s.

This plugin keeps the compiled code objects: in a directory only this user can write
(marshal files, like Jinja's own bytecode cache), where a worker reads the one it needs
(~0.1 ms against ~0.6 ms to compile) and writes one it compiled. They are not read into
the controller: a controller grown by every cached template (8300 of them, 43 MB, after a
CI run) forks its workers more slowly, and the re-run gained nothing. A
code object is found again only under the same key: the template source, the Jinja
environment's compile settings, Ansible's compile flags (backslash escaping, embedded
templates), the Python, Jinja and Ansible versions, and for each filter or test the
source names, how Jinja calls it and its code (Jinja folds a filter applied to constants
into the compiled code). Templates naming a filter that gives a different result on each
call (random, shuffle, password_hash, strftime) are never cached. A directory owned by
another user or writable by others is not used.

MDUS_JINJA_CACHE=0 switches it off; MDUS_JINJA_CACHE_DIR moves it (default
$XDG_CACHE_HOME/mdus-platform/jinja, else ~/.cache/mdus-platform/jinja).
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import marshal
import os
import re
import stat
import sys
import tempfile
from pathlib import Path
from types import CodeType
from typing import Any

import jinja2
from ansible import __version__ as ANSIBLE_VERSION
from ansible.plugins.callback import CallbackBase
from jinja2.utils import _PassArg

try:  # Ansible's own compile flags and environment (ansible-core 2.19)
    from ansible._internal._templating._jinja_bits import (
        AnsibleEnvironment,
        _TemplateCompileContext,
    )
    from ansible._internal._templating._jinja_common import _TemplateConfig
except ImportError:  # another ansible-core: the plugin does nothing
    AnsibleEnvironment = None

DOCUMENTATION = """
    name: jinja_compile_cache
    type: aggregate
    short_description: keep compiled Jinja templates for the forked workers and later runs
    description:
        - Caches the code objects Jinja compiles from template strings, keyed by the source,
          the environment's compile settings and the filters and tests the source names.
        - MDUS_JINJA_CACHE=0 switches it off; MDUS_JINJA_CACHE_DIR sets the directory.
    requirements:
      - enable in configuration (callbacks_enabled)
"""

FORMAT = "1"
MAX_FILES = 20000  # more than this in the directory: start again from an empty one
NON_DETERMINISTIC = frozenset({"random", "shuffle", "password_hash", "strftime"})
_FILTER = re.compile(r"\|\s*([A-Za-z_][\w.]*)")
_FILTER_BLOCK = re.compile(r"\{%[-+]?\s*filter\s+([A-Za-z_][\w.]*)")
_TEST = re.compile(r"\bis\s+(?:not\s+)?([A-Za-z_][\w.]*)")

_memory: dict[str, CodeType] = {}
_prints: dict[Any, str] = {}  # filter or test function -> its part of the key
_state: dict[str, Any] = {"dir": None, "original": None}


def cache_dir() -> Path:
    configured = os.environ.get("MDUS_JINJA_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mdus-platform" / "jinja"


def usable_dir(path: Path) -> bool:
    """Create the directory 0700; use it only when this user owns it and nobody else can write."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.lstat()
    except OSError:
        return False
    return (
        stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.getuid()
        and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    )


def _callable_print(kind: str, env_map: Any, name: str) -> str | None:
    """How Jinja calls the filter or test `name` and what it runs; None: do not cache."""
    if name.rpartition(".")[2] in NON_DETERMINISTIC:
        return None
    try:
        func = env_map.get(name)
    except Exception:  # a plugin that fails to load: compile as usual, uncached
        return None
    if func is None:
        return f"{kind}:{name}:missing"
    try:
        return _prints[func]
    except (KeyError, TypeError):
        pass
    inner = inspect.unwrap(func)
    code = getattr(inner, "__code__", None)
    body = hashlib.sha256(code.co_code).hexdigest() if code else type(inner).__qualname__
    origin = f"{getattr(inner, '__module__', '')}.{getattr(inner, '__qualname__', '')}"
    entry = f"{kind}:{name}:{_PassArg.from_obj(func)}:{origin}:{body}"
    with contextlib.suppress(TypeError):  # an unhashable callable: printed again next time
        _prints[func] = entry
    return entry


def _env_print(env: Any) -> str:
    finalize = env.finalize
    settings = (
        type(env).__module__,
        type(env).__qualname__,
        env.code_generator_class.__qualname__,
        env.block_start_string,
        env.block_end_string,
        env.variable_start_string,
        env.variable_end_string,
        env.comment_start_string,
        env.comment_end_string,
        env.line_statement_prefix,
        env.line_comment_prefix,
        env.trim_blocks,
        env.lstrip_blocks,
        env.newline_sequence,
        env.keep_trailing_newline,
        tuple(sorted(env.extensions)),
        env.optimized,
        env.is_async,
        getattr(env.autoescape, "__qualname__", repr(env.autoescape)),
        None
        if finalize is None
        else (getattr(finalize, "__qualname__", ""), _PassArg.from_obj(finalize)),
    )
    return repr(settings)


def _ansible_flags() -> str:
    context = _TemplateCompileContext.current(optional=True)
    escape = bool(context and context.escape_backslashes)
    return f"escape={escape}:embedded={_TemplateConfig.allow_embedded_templates}"


def cache_key(
    env: Any, source: str, name: str | None, filename: str | None, defer_init: bool
) -> str | None:
    """The key of one compile, or None when it must not be cached."""
    prints = []
    for kind, pattern, env_map in (
        ("filter", _FILTER, env.filters),
        ("filter", _FILTER_BLOCK, env.filters),
        ("test", _TEST, env.tests),
    ):
        for found in sorted(set(pattern.findall(source))):
            entry = _callable_print(kind, env_map, found)
            if entry is None:
                return None
            prints.append(entry)
    digest = hashlib.sha256()
    for part in (
        FORMAT,
        sys.version,
        jinja2.__version__,
        ANSIBLE_VERSION,
        _ansible_flags(),
        _env_print(env),
        repr((name, filename, defer_init)),
        "\n".join(prints),
        str(source),
    ):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


def _load(directory: Path | None, key: str) -> CodeType | None:
    if key in _memory:
        return _memory[key]
    if directory is None:
        return None
    try:
        code = marshal.loads((directory / key).read_bytes())
    except (OSError, EOFError, ValueError, TypeError):
        return None
    if not isinstance(code, CodeType):
        return None
    _memory[key] = code
    return code


def _store(directory: Path | None, key: str, code: CodeType) -> None:
    _memory[key] = code
    if directory is None:
        return
    try:
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        with os.fdopen(handle, "wb") as out:
            out.write(marshal.dumps(code))
        os.replace(temporary, directory / key)
    except OSError:
        return


def prune(directory: Path) -> int:
    """Empty the directory when it holds more than MAX_FILES; the number of files kept."""
    names = [entry.name for entry in os.scandir(directory) if not entry.name.startswith(".")]
    if len(names) <= MAX_FILES:
        return len(names)
    for name in names:
        (directory / name).unlink(missing_ok=True)
    return 0


def cached_compile(  # noqa: PLR0917 - Jinja calls compile(source, name, filename)
    self: Any,
    source: Any,
    name: str | None = None,
    filename: str | None = None,
    raw: bool = False,
    defer_init: bool = False,
) -> Any:
    original = _state["original"]
    if raw or not isinstance(source, str) or getattr(self, "_debuggable_template_source", False):
        return original(self, source, name, filename, raw, defer_init)
    key = cache_key(self, source, name, filename, defer_init)
    if key is None:
        return original(self, source, name, filename, raw, defer_init)
    code = _load(_state["dir"], key)
    if code is None:
        code = original(self, source, name, filename, raw, defer_init)
        _store(_state["dir"], key, code)
    return code


def install(directory: Path | None) -> bool:
    """Wrap AnsibleEnvironment.compile (once); directory None keeps the cache in memory."""
    if AnsibleEnvironment is None:
        return False
    if _state["original"] is None:
        _state["original"] = AnsibleEnvironment.compile
        AnsibleEnvironment.compile = cached_compile
    _state["dir"] = directory
    if directory is not None:
        prune(directory)
    return True


def uninstall() -> None:
    """Undo install() and forget every cached code object (tests)."""
    if AnsibleEnvironment is not None and _state["original"] is not None:
        AnsibleEnvironment.compile = _state["original"]
        _state["original"] = None
    _state["dir"] = None
    _memory.clear()


def enabled() -> bool:
    switch = os.environ.get("MDUS_JINJA_CACHE", "1").strip().lower()
    return switch not in {"0", "false", "no", "off"}


class CallbackModule(CallbackBase):  # type: ignore[misc]
    """Installs the compile cache in the controller, which the forked workers inherit."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "jinja_compile_cache"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not enabled():
            return
        directory = cache_dir()
        if usable_dir(directory):
            install(directory)
            return
        install(None)
        self._display.warning(
            f"jinja_compile_cache: {directory} is not a directory that only this user can "
            "write; compiled templates are kept in memory only (set MDUS_JINJA_CACHE_DIR)"
        )
