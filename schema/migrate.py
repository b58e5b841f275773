#!/usr/bin/env python3
"""MDUS schema migration runner.

Applies ``schema/migrations/NNN_name.sql`` files in strict version order, one transaction
per migration with its history row inside it, under a session-level advisory lock, with
the session reset between migrations, and refuses to run when an applied file was edited.
Files are checked before anything runs: no transaction control statements, and a
``no-transaction`` section is one statement (a CREATE INDEX CONCURRENTLY there is checked
for an INVALID index before and after it). Failures are logged in a transaction of their
own. Needs only the standard library and
psycopg 3.1+ (Debian 12's python3-psycopg). Connection settings come from libpq: the PG*
environment variables, ~/.pgpass, or ``--dsn``; TLS settings (sslmode, sslrootcert, ...)
pass straight through to libpq.

Exit codes (see --help and docs/schema.md):
  0 success, nothing to do / nothing changed
  1 error (SQL error, bad usage, connection failure, refused file, refused rollback)
  2 success, something was applied / rolled back / repaired (with --dry-run: would be)
  3 refused: applied migrations do not match their files (drift), or out-of-order files
  4 could not get a lock: migration lock held by another session, or lock_timeout retries
    exhausted
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import random
import re
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import psycopg
from psycopg import errors

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGED = 2
EXIT_DRIFT = 3
EXIT_LOCKED = 4

APPLICATION_NAME = "mdus-migrate"
LOCK_KEY = 0x4D445553  # "MDUS"; below 2**31, so pg_locks shows classid 0, objid LOCK_KEY
CHECKSUM_ALGORITHM = "sha256:lf:no-bom"
FILE_RE = re.compile(r"^(?P<version>\d{3,})_(?P<name>[a-z0-9_]+)\.sql$")
MARKER_RE = re.compile(r"^--\s*migrate:(?P<key>[a-z_-]+)\s*(?P<value>.*?)\s*$")
DEFAULT_DIR = Path(__file__).resolve().parent / "migrations"
NO_TX_LOCK_TIMEOUT_ENV = "MDUS_MIGRATE_NO_TRANSACTION_LOCK_TIMEOUT"
NO_TX_LOCK_TIMEOUT_DEFAULT = "10min"

# The runner's own tables, always schema-qualified: a migration's search_path is not theirs.
HISTORY_TABLE = "public.schema_migrations"
LOG_TABLE = "public.schema_migrations_log"

HISTORY_DDL = f"""
CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (
    version            text PRIMARY KEY,
    name               text NOT NULL,
    checksum           text NOT NULL,
    checksum_algorithm text NOT NULL,
    applied_at         timestamptz NOT NULL DEFAULT now(),
    applied_by         text NOT NULL DEFAULT session_user,
    execution_ms       integer NOT NULL,
    success            boolean NOT NULL,
    kind               text NOT NULL DEFAULT 'migrate' CHECK (kind IN ('migrate', 'baseline'))
);
CREATE TABLE IF NOT EXISTS {LOG_TABLE} (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    logged_at timestamptz NOT NULL DEFAULT now(),
    logged_by text NOT NULL DEFAULT session_user,
    action    text NOT NULL,
    version   text,
    details   jsonb NOT NULL DEFAULT '{{}}'
);
""".encode()

# Between migrations: what one file SETs (search_path, role, GUCs), its temporary tables,
# cursors and LISTENs do not reach the next. Not DISCARD ALL: that would also release the
# session-level migration lock. Values given at connection time (PGOPTIONS) stay.
SESSION_RESET_SQL = b"""
CLOSE ALL;
UNLISTEN *;
SET SESSION AUTHORIZATION DEFAULT;
RESET ROLE;
RESET ALL;
DISCARD TEMP;
DISCARD SEQUENCES;
"""

INDEX_STATE_SQL = """
SELECT format('%%I.%%I', n.nspname, c.relname), i.indisvalid,
       i.indrelid = to_regclass(%(table)s)
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid
 WHERE c.relname = %(name)s
   AND c.relnamespace = (SELECT relnamespace FROM pg_catalog.pg_class
                          WHERE oid = to_regclass(%(table)s))
"""

BLOCKERS_SQL = """
SELECT a.pid, a.usename, a.application_name, a.client_addr::text, a.state,
       a.xact_start::text, left(a.query, 160)
  FROM unnest(pg_blocking_pids(%s)) AS b (pid)
  JOIN pg_stat_activity a ON a.pid = b.pid
"""

LOCK_HOLDERS_SQL = """
SELECT a.pid, a.usename, a.application_name, a.client_addr::text, a.state,
       a.backend_start::text, left(a.query, 160)
  FROM pg_locks l
  JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = %s
   AND l.objsubid = 1
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


class MigrationError(Exception):
    """A refusal or failure with a message meant for the operator."""

    exit_code = EXIT_ERROR


class DriftError(MigrationError):
    exit_code = EXIT_DRIFT


class LockError(MigrationError):
    exit_code = EXIT_LOCKED


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path
    checksum: str
    up: str
    down: str | None
    transactional: bool
    lock_timeout: str | None
    statement_timeout: str | None

    @property
    def ident(self) -> str:
        return f"{self.version}_{self.name}"

    @property
    def number(self) -> int:
        return int(self.version)


@dataclass(frozen=True)
class Applied:
    version: str
    name: str
    checksum: str
    checksum_algorithm: str
    applied_at: str
    applied_by: str
    execution_ms: int
    success: bool
    kind: str


@dataclass
class Options:
    dsn: str
    lock_wait: float
    lock_timeout: str
    statement_timeout: str
    lock_retries: int
    dry_run: bool
    quiet: bool
    restore_point: bool = True
    no_tx_lock_timeout: str = NO_TX_LOCK_TIMEOUT_DEFAULT
    verbose: bool = False


@dataclass
class Report:
    command: str
    dry_run: bool
    changed: bool = False
    applied: list[dict[str, Any]] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    drift: list[dict[str, str]] = field(default_factory=list)
    current: str | None = None
    restore_point: dict[str, str] | None = None
    migrations: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    exit_code: int = EXIT_OK


# --------------------------------------------------------------------------- SQL scanning
#
# Just enough of PostgreSQL's lexer to find statement boundaries and first words: quoted
# strings ('', E'' with backslashes), quoted identifiers, dollar quotes, -- and nested /* */
# comments are skipped; ';' ends a statement outside parentheses and outside the
# BEGIN ... END of a SQL-standard routine body (CREATE FUNCTION ... BEGIN ATOMIC), the
# same heuristic psql uses.

WORD_RE = re.compile(r"[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*")
NUMBER_RE = re.compile(r"[0-9][0-9A-Za-z_.]*")
DOLLAR_RE = re.compile(r"\$(?:[A-Za-z_\u0080-\uffff][A-Za-z0-9_\u0080-\uffff]*)?\$")
ROUTINE_HEADS = (("CREATE", "FUNCTION"), ("CREATE", "PROCEDURE"))


@dataclass(frozen=True)
class Token:
    kind: str  # "word", "ident" (a "quoted" identifier), "literal", "symbol"
    text: str
    offset: int

    @property
    def word(self) -> str:
        """The keyword in upper case, '' for anything but a bare word."""
        return self.text.upper() if self.kind == "word" else ""


@dataclass(frozen=True)
class Statement:
    tokens: tuple[Token, ...]

    @property
    def offset(self) -> int:
        return self.tokens[0].offset

    def words(self, count: int) -> list[str]:
        """The first ``count`` tokens as upper-case keywords ('' for other tokens)."""
        head = [token.word for token in self.tokens[:count]]
        return head + [""] * (count - len(head))


def _end_of_comment(sql: str, start: int) -> int:
    if sql.startswith("--", start):
        end = sql.find("\n", start)
        return len(sql) if end < 0 else end + 1
    depth, pos = 0, start
    while pos < len(sql):
        if sql.startswith("/*", pos):
            depth, pos = depth + 1, pos + 2
        elif sql.startswith("*/", pos):
            depth, pos = depth - 1, pos + 2
            if depth == 0:
                return pos
        else:
            pos += 1
    return len(sql)


def _end_of_quoted(sql: str, start: int, backslash: bool = False) -> int:
    """Index after the quote closing the one at ``start`` (a doubled quote is literal)."""
    quote, pos = sql[start], start + 1
    while pos < len(sql):
        char = sql[pos]
        if (backslash and char == "\\") or (char == quote and sql.startswith(quote, pos + 1)):
            pos += 2
        elif char == quote:
            return pos + 1
        else:
            pos += 1
    return len(sql)


def _end_of_dollar(sql: str, start: int, tag: str) -> int:
    close = sql.find(tag, start + len(tag))
    return len(sql) if close < 0 else close + len(tag)


def _scan_token(sql: str, pos: int) -> Token:
    char = sql[pos]
    dollar = DOLLAR_RE.match(sql, pos) if char == "$" else None
    word = WORD_RE.match(sql, pos)
    if char in "'\"":
        kind, end = ("literal" if char == "'" else "ident"), _end_of_quoted(sql, pos)
    elif dollar:
        kind, end = "literal", _end_of_dollar(sql, pos, dollar.group())
    elif word and word.group() in ("E", "e") and sql.startswith("'", word.end()):
        kind, end = "literal", _end_of_quoted(sql, word.end(), backslash=True)
    elif word:
        kind, end = "word", word.end()
    else:
        number = NUMBER_RE.match(sql, pos)
        kind, end = ("literal", number.end()) if number else ("symbol", pos + 1)
    return Token(kind, sql[pos:end], pos)


def tokenize(sql: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(sql):
        if sql[pos].isspace():
            pos += 1
        elif sql.startswith(("--", "/*"), pos):
            pos = _end_of_comment(sql, pos)
        else:
            token = _scan_token(sql, pos)
            tokens.append(token)
            pos = token.offset + len(token.text)
    return tokens


@dataclass
class _Nesting:
    """Parentheses, and BEGIN/CASE ... END inside a SQL-standard routine body."""

    parens: int = 0
    blocks: int = 0

    @property
    def open(self) -> bool:
        return self.parens > 0 or self.blocks > 0

    def feed(self, tokens: Sequence[Token], token: Token) -> None:
        if token.text in ("(", ")") and token.kind == "symbol":
            self.parens = max(0, self.parens + (1 if token.text == "(" else -1))
            return
        if not token.word or self.parens or not is_routine(tokens):
            return
        if token.word == "BEGIN" or (token.word == "CASE" and self.blocks):
            self.blocks += 1
        elif token.word == "END" and self.blocks:
            self.blocks -= 1


def is_routine(tokens: Sequence[Token]) -> bool:
    """CREATE [OR REPLACE] FUNCTION|PROCEDURE: may have a BEGIN ATOMIC ... END body."""
    words = [token.word for token in tokens[:4]] + [""] * 4
    if words[1:3] == ["OR", "REPLACE"]:
        words = [words[0], words[3]]
    return tuple(words[:2]) in ROUTINE_HEADS


def split_statements(sql: str) -> list[Statement]:
    statements: list[Statement] = []
    current: list[Token] = []
    nesting = _Nesting()
    for token in tokenize(sql):
        if token.kind == "symbol" and token.text == ";" and not nesting.open:
            if current:
                statements.append(Statement(tuple(current)))
            current, nesting = [], _Nesting()
            continue
        current.append(token)
        nesting.feed(current, token)
    if current:
        statements.append(Statement(tuple(current)))
    return statements


def transaction_control(statement: Statement) -> str | None:
    """The transaction control command a statement is, if any (savepoints are fine: they
    stay inside the runner's transaction)."""
    words = statement.words(4)
    first = words[0]
    if first in ("BEGIN", "COMMIT", "END", "ABORT"):
        return first
    if first in ("START", "PREPARE") and words[1] == "TRANSACTION":
        return f"{first} TRANSACTION"
    rest = [w for w in words[1:] if w not in ("WORK", "TRANSACTION")]
    if first == "ROLLBACK" and rest[:1] != ["TO"]:
        return "ROLLBACK"
    return None


@dataclass(frozen=True)
class IndexBuild:
    """The index a CREATE INDEX CONCURRENTLY statement builds."""

    name: str  # as stored in pg_class.relname ('' when the statement names none)
    table: str  # as written, for to_regclass()


def _identifier(token: Token) -> str:
    if token.kind == "ident":
        return token.text[1:-1].replace('""', '"')
    return token.text.lower()


def _qualified_name(tokens: Sequence[Token]) -> str:
    """Text of a possibly schema-qualified name at the start of ``tokens``."""
    parts: list[str] = []
    for token in tokens:
        expect_name = len(parts) % 2 == 0
        if expect_name and token.kind in ("word", "ident"):
            parts.append(token.text)
        elif not expect_name and token.kind == "symbol" and token.text == ".":
            parts.append(".")
        else:
            break
    return "".join(parts)


def concurrent_index(statement: Statement) -> IndexBuild | None:
    """CREATE [UNIQUE] INDEX CONCURRENTLY [IF NOT EXISTS] [name] ON [ONLY] table ..."""
    tokens = statement.tokens
    words = statement.words(len(tokens))
    pos = 2 if words[1] == "UNIQUE" else 1
    if words[0] != "CREATE" or words[pos : pos + 2] != ["INDEX", "CONCURRENTLY"]:
        return None
    pos += 2
    if words[pos : pos + 3] == ["IF", "NOT", "EXISTS"]:
        pos += 3
    rest = tokens[pos:]
    name = _identifier(rest[0]) if rest and rest[0].word != "ON" else ""
    rest = rest[2:] if name else rest[1:]  # past the name and ON
    if rest and rest[0].word == "ONLY":
        rest = rest[1:]
    return IndexBuild(name=name, table=_qualified_name(rest))


# --------------------------------------------------------------------------- files


def normalise(raw: bytes) -> str:
    """File text as checksummed and executed: UTF-8, no BOM, LF line ends."""
    text = raw.decode("utf-8")
    text = text.removeprefix("\ufeff")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def checksum(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def has_sql(text: str) -> bool:
    """True when the text holds anything but blank lines and -- comments."""
    return any(line.strip() and not line.strip().startswith("--") for line in text.split("\n"))


def parse_migration(path: Path) -> Migration:
    match = FILE_RE.match(path.name)
    if not match:
        raise MigrationError(f"{path.name}: file name must look like 001_some_name.sql")
    text = normalise(path.read_bytes())
    sections: dict[str, list[str]] = {"header": [], "up": [], "down": []}
    first_line = {"header": 1, "up": 1, "down": 1}
    settings: dict[str, str] = {}
    current = "header"
    for number, line in enumerate(text.split("\n"), start=1):
        marker = MARKER_RE.match(line.strip())
        if not marker:
            sections[current].append(line)
            continue
        key, value = marker.group("key"), marker.group("value")
        if key in ("up", "down"):
            if first_line[key] > 1 or (key == "down" and first_line["up"] == 1):
                raise MigrationError(f"{path.name}: misplaced or repeated '-- migrate:{key}'")
            current, first_line[key] = key, number + 1
        elif key in ("no-transaction", "lock-timeout", "statement-timeout"):
            settings[key] = value
        else:
            raise MigrationError(f"{path.name}: unknown marker '{line.strip()}'")
    up, down = "\n".join(sections["up"]), "\n".join(sections["down"])
    if not has_sql(up):
        raise MigrationError(f"{path.name}: no SQL after '-- migrate:up'")
    transactional = "no-transaction" not in settings
    for section in ("up", "down"):
        body = "\n".join(sections[section])
        check_section(path.name, section, body, first_line[section], transactional)
    return Migration(
        version=match.group("version"),
        name=match.group("name"),
        path=path,
        checksum=checksum(text),
        up=up,
        down=down if has_sql(down) else None,
        transactional=transactional,
        lock_timeout=settings.get("lock-timeout") or None,
        statement_timeout=settings.get("statement-timeout") or None,
    )


def line_of(body: str, offset: int, first_line: int) -> int:
    return first_line + body.count("\n", 0, offset)


def check_section(
    filename: str, section: str, body: str, first_line: int, transactional: bool
) -> None:
    """Refuse, when the file is read, SQL the runner cannot run safely."""
    statements = split_statements(body)
    for statement in statements:
        control = transaction_control(statement)
        if control:
            where = f"{filename}:{line_of(body, statement.offset, first_line)}"
            raise MigrationError(
                f"{where}: {control} in the {section} section: transaction control is not"
                " allowed in a migration file. The runner runs each migration in one"
                " transaction with its history row; a COMMIT or ROLLBACK inside would end it"
                " half-way, keep part of the migration and record nothing. Remove the"
                f" {control} (and its matching BEGIN/COMMIT); a statement that cannot run in"
                " a transaction (CREATE INDEX CONCURRENTLY) goes alone into its own file"
                " marked '-- migrate:no-transaction'. Nothing was run."
            )
    if not transactional and statements:
        check_single_statement(filename, section, body, first_line, statements)


def check_single_statement(
    filename: str, section: str, body: str, first_line: int, statements: Sequence[Statement]
) -> None:
    if len(statements) > 1:
        lines = ", ".join(str(line_of(body, s.offset, first_line)) for s in statements)
        raise MigrationError(
            f"{filename}:{line_of(body, statements[1].offset, first_line)}: the {section}"
            f" section of a '-- migrate:no-transaction' file must be exactly one statement;"
            f" found {len(statements)} (starting on lines {lines}). Put each statement that"
            " cannot run in a transaction into its own no-transaction file, the rest into a"
            " normal file. Nothing was run."
        )
    index = concurrent_index(statements[0])
    if index is not None and not index.name:
        raise MigrationError(
            f"{filename}:{line_of(body, statements[0].offset, first_line)}: CREATE INDEX"
            " CONCURRENTLY must name its index (CREATE INDEX CONCURRENTLY IF NOT EXISTS name"
            " ON ...) so that the runner can check that the index it leaves is valid."
            " Nothing was run."
        )


def load_migrations(directory: Path) -> list[Migration]:
    if not directory.is_dir():
        raise MigrationError(f"migrations directory {directory} does not exist")
    migrations = [parse_migration(p) for p in sorted(directory.glob("*.sql"))]
    migrations.sort(key=lambda m: m.number)
    for first, second in itertools.pairwise(migrations):
        if first.number == second.number:
            raise MigrationError(f"duplicate version: {first.path.name} and {second.path.name}")
    return migrations


def resolve_target(target: str, migrations: Sequence[Migration]) -> int:
    """'3', '003' or '003_add_user_preferences' -> 3; '0' means before the first."""
    head = target.split("_", 1)[0]
    if not head.isdigit():
        raise MigrationError(f"target {target!r} is not a version (e.g. 002 or 002_name)")
    number = int(head)
    known = {m.number: m for m in migrations}
    if number != 0 and number not in known:
        raise MigrationError(f"target {target!r} matches no migration file")
    if number and "_" in target and known[number].ident != target:
        raise MigrationError(f"target {target!r} does not match file {known[number].ident}")
    return number


# --------------------------------------------------------------------------- database


def say(opts: Options, message: str) -> None:
    if not opts.quiet:
        print(message, flush=True)


def connect(dsn: str) -> psycopg.Connection[Any]:
    try:
        conn = psycopg.connect(dsn, autocommit=True, application_name=APPLICATION_NAME)
    except psycopg.Error as exc:
        raise MigrationError(f"cannot connect: {exc}".strip()) from exc
    session_defaults(conn)
    return conn


def session_defaults(conn: psycopg.Connection[Any]) -> None:
    # A killed runner's backend notices the dead client within seconds, rolls back and
    # releases the migration lock, instead of running its statement to the end.
    conn.execute("SELECT set_config('client_connection_check_interval', '2s', false)")


def reset_session(conn: psycopg.Connection[Any]) -> None:
    """Undo what the previous migration left in the session; the advisory lock stays."""
    conn.execute(SESSION_RESET_SQL)
    session_defaults(conn)


def describe_sessions(rows: Sequence[tuple[Any, ...]]) -> str:
    if not rows:
        return "no blocking session found (it ended before it could be observed)"
    parts = []
    for pid, user, app, addr, state, since, query in rows:
        where = addr or "local socket"
        parts.append(
            f"pid {pid} (user {user}, application {app!r}, from {where}, state {state},"
            f" since {since}, query: {query!r})"
        )
    return "; ".join(parts)


def history_exists(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT to_regclass(%s) IS NOT NULL, to_regclass('schema_migrations')::text",
        (HISTORY_TABLE,),
    ).fetchone()
    if row and not row[0] and row[1]:
        raise MigrationError(
            f"the migration history is in {row[1]}, the runner keeps it in {HISTORY_TABLE}:"
            f" move it there (ALTER TABLE {row[1]} SET SCHEMA public, and the same for"
            " schema_migrations_log) and run again"
        )
    return bool(row and row[0])


def ensure_history(conn: psycopg.Connection[Any]) -> None:
    if history_exists(conn):
        cols = conn.execute(
            "SELECT count(*) FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attname = 'checksum'",
            (HISTORY_TABLE,),
        ).fetchone()
        if not cols or not cols[0]:
            raise MigrationError(
                "schema_migrations has the old seed format (no checksum column);"
                " run 'baseline --version V' to convert it"
            )
    with conn.transaction():
        conn.execute(HISTORY_DDL)


def read_applied(conn: psycopg.Connection[Any]) -> dict[str, Applied]:
    if not history_exists(conn):
        return {}
    rows = conn.execute(
        "SELECT version, name, checksum, checksum_algorithm, applied_at::text, applied_by,"
        f" execution_ms, success, kind FROM {HISTORY_TABLE} ORDER BY version"
    ).fetchall()
    return {row[0]: Applied(*row) for row in rows}


def log_action(
    conn: psycopg.Connection[Any], action: str, version: str | None, details: dict[str, Any]
) -> None:
    conn.execute(
        f"INSERT INTO {LOG_TABLE} (action, version, details) VALUES (%s, %s, %s)",
        (action, version, json.dumps(details)),
    )


def acquire_lock(conn: psycopg.Connection[Any], wait: float) -> None:
    """Poll a session-level TRY lock; never queue behind it inside a transaction."""
    deadline = time.monotonic() + wait
    delay = 0.1
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()
        if row and row[0]:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            holders = conn.execute(LOCK_HOLDERS_SQL, (LOCK_KEY,)).fetchall()
            raise LockError(
                f"another migration run holds the migration lock (advisory lock {LOCK_KEY})"
                f" and did not release it within {wait:g}s: {describe_sessions(holders)}"
            )
        time.sleep(min(delay, remaining))
        delay = min(delay * 1.5, 1.0)


def release_lock(conn: psycopg.Connection[Any]) -> None:
    """Best effort: closing the session releases the lock anyway."""
    if conn.closed or conn.broken:
        return
    try:
        conn.execute("SELECT pg_advisory_unlock_all()")
    except psycopg.Error:
        return


class BlockerWatch:
    """Second connection that remembers who blocks the runner's backend, for the message
    given when lock_timeout retries run out (after the timeout the wait is gone)."""

    def __init__(self, dsn: str, pid: int) -> None:
        self._dsn = dsn
        self._pid = pid
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._seen: list[tuple[Any, ...]] = []
        self._thread = threading.Thread(target=self._run, name="blocker-watch", daemon=True)

    def __enter__(self) -> BlockerWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def reset(self) -> None:
        with self._lock:
            self._seen = []

    @property
    def seen(self) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._seen)

    def _run(self) -> None:
        try:
            with psycopg.connect(
                self._dsn, autocommit=True, application_name=f"{APPLICATION_NAME}-watch"
            ) as conn:
                while not self._stop.wait(0.1):
                    rows = conn.execute(BLOCKERS_SQL, (self._pid,)).fetchall()
                    if rows:
                        with self._lock:
                            self._seen = rows
        except psycopg.Error:
            return


# --------------------------------------------------------------------------- checks


def find_drift(
    migrations: Sequence[Migration], applied: dict[str, Applied]
) -> list[dict[str, str]]:
    files = {m.version: m for m in migrations}
    drift = []
    for version, row in sorted(applied.items()):
        found = files.get(version)
        if found is None:
            problem, detail = "missing", f"applied as {version}_{row.name} but the file is gone"
        elif not row.success:
            problem, detail = "failed", "a non-transactional run failed; check by hand"
        elif row.checksum != found.checksum:
            problem = "checksum"
            detail = (
                f"{found.path.name} changed after it was applied"
                f" (recorded {row.checksum[:12]}, file {found.checksum[:12]})"
            )
        elif row.name != found.name:
            problem, detail = "renamed", f"applied as {version}_{row.name}, file {found.ident}"
        else:
            continue
        drift.append({"version": version, "name": row.name, "problem": problem, "detail": detail})
    return drift


def verify(migrations: Sequence[Migration], applied: dict[str, Applied], report: Report) -> None:
    report.drift = find_drift(migrations, applied)
    if report.drift:
        lines = "\n  ".join(f"{d['version']}: {d['detail']}" for d in report.drift)
        raise DriftError(
            f"applied migrations do not match their files:\n  {lines}\n"
            "Restore the files, or run 'repair' to accept them as they are now."
        )
    top = max((int(v) for v in applied), default=0)
    late = [m.ident for m in migrations if m.version not in applied and m.number < top]
    if late:
        raise DriftError(
            f"out of order: {', '.join(late)} sort before the applied version {top:03d};"
            " give them a higher version number"
        )


def lock_timeout_of(migration: Migration, opts: Options) -> str:
    """The file's marker, else --lock-timeout, or --no-transaction-lock-timeout for a
    no-transaction file (CREATE INDEX CONCURRENTLY waits for older transactions)."""
    if migration.lock_timeout:
        return migration.lock_timeout
    return opts.lock_timeout if migration.transactional else opts.no_tx_lock_timeout


def set_timeouts(
    conn: psycopg.Connection[Any], migration: Migration, opts: Options, local: bool
) -> None:
    conn.execute(
        "SELECT set_config('lock_timeout', %s, %s), set_config('statement_timeout', %s, %s)",
        (
            lock_timeout_of(migration, opts),
            local,
            migration.statement_timeout or opts.statement_timeout,
            local,
        ),
    )


def elapsed_ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


def record(
    conn: psycopg.Connection[Any],
    migration: Migration,
    direction: str,
    ms: int,
    success: bool,
    *,
    error: str | None = None,
) -> None:
    conn.execute("RESET ROLE")  # the file may have SET LOCAL ROLE; history is the runner's
    if direction == "up":
        conn.execute(
            f"INSERT INTO {HISTORY_TABLE} (version, name, checksum, checksum_algorithm,"
            " execution_ms, success) VALUES (%s, %s, %s, %s, %s, %s)",
            (
                migration.version,
                migration.name,
                migration.checksum,
                CHECKSUM_ALGORITHM,
                ms,
                success,
            ),
        )
    else:
        conn.execute(f"DELETE FROM {HISTORY_TABLE} WHERE version = %s", (migration.version,))
    action = ("migrate" if direction == "up" else "rollback") if success else "failed"
    details: dict[str, Any] = {"name": migration.name, "checksum": migration.checksum, "ms": ms}
    if error is not None:
        details["error"] = error
    log_action(conn, action, migration.version, details)


def log_failure(
    conn: psycopg.Connection[Any],
    migration: Migration,
    direction: str,
    failure: MigrationError,
    *,
    ms: int,
    attempts: int = 1,
    sqlstate: str | None = None,
) -> MigrationError:
    """Append a 'failed' row to the log in a transaction of its own, after the migration's
    transaction was rolled back (taking anything written inside it along); return the
    error to raise, with a note when the row could not be written."""
    details = {
        "name": migration.name,
        "checksum": migration.checksum,
        "direction": direction,
        "transactional": migration.transactional,
        "ms": ms,
        "attempts": attempts,
        "sqlstate": sqlstate,
        "error": str(failure),
    }
    try:
        reset_session(conn)
        with conn.transaction():
            log_action(conn, "failed", migration.version, details)
    except psycopg.Error as exc:
        return type(failure)(f"{failure}\n  (could not write this failure to {LOG_TABLE}: {exc})")
    return failure


def sql_failure(migration: Migration, direction: str, exc: psycopg.Error) -> MigrationError:
    diag = exc.diag
    parts = [f"{migration.ident} ({direction}) failed: {diag.message_primary or exc}"]
    for label, value in (
        ("sqlstate", diag.sqlstate),
        ("detail", diag.message_detail),
        ("hint", diag.message_hint),
        ("context", diag.context),
    ):
        if value:
            parts.append(f"  {label}: {value}")
    if migration.transactional:
        parts.append("  the migration was rolled back; the database is as it was before it")
    return MigrationError("\n".join(parts))


def step_report(migration: Migration, direction: str, ms: int, attempts: int) -> dict[str, Any]:
    return {
        "version": migration.version,
        "name": migration.name,
        "direction": direction,
        "ms": ms,
        "attempts": attempts,
        "transactional": migration.transactional,
    }


def run_transactional(
    conn: psycopg.Connection[Any],
    migration: Migration,
    direction: str,
    opts: Options,
    watch: BlockerWatch,
) -> dict[str, Any]:
    body = (migration.up if direction == "up" else migration.down) or ""
    attempt = 0
    start = time.monotonic()

    def logged(failure: MigrationError, exc: psycopg.Error) -> MigrationError:
        """The failure, logged with this attempt's number and duration."""
        return log_failure(
            conn,
            migration,
            direction,
            failure,
            ms=elapsed_ms(start),
            attempts=attempt,
            sqlstate=exc.sqlstate,
        )

    while True:
        attempt += 1
        watch.reset()
        start = time.monotonic()
        try:
            with conn.transaction():
                set_timeouts(conn, migration, opts, local=True)
                conn.execute(body.encode("utf-8"))
                ms = elapsed_ms(start)
                record(conn, migration, direction, ms, success=True)
        except errors.LockNotAvailable as exc:
            if attempt > opts.lock_retries:
                failure = LockError(
                    f"{migration.ident} ({direction}): lock_timeout"
                    f" ({lock_timeout_of(migration, opts)}) hit {attempt} times,"
                    f" giving up; rolled back, nothing changed. Blocking sessions:"
                    f" {describe_sessions(watch.seen)}"
                )
                raise logged(failure, exc) from exc
            pause = min(0.5 * 2 ** (attempt - 1), 10.0) * random.uniform(0.8, 1.2)
            say(
                opts,
                f"  {migration.ident}: lock timeout (attempt {attempt}),"
                f" retrying in {pause:.1f}s; blocked by {describe_sessions(watch.seen)}",
            )
            time.sleep(pause)
            continue
        except psycopg.Error as exc:
            raise logged(sql_failure(migration, direction, exc), exc) from exc
        return step_report(migration, direction, ms, attempt)


class InvalidIndexError(MigrationError):
    """A CREATE INDEX CONCURRENTLY left (or found) an index that is not valid."""


@dataclass(frozen=True)
class IndexState:
    qualified: str  # schema.name, quoted as needed: ready for DROP INDEX CONCURRENTLY
    valid: bool
    on_table: bool


def index_state(conn: psycopg.Connection[Any], index: IndexBuild) -> IndexState | None:
    row = conn.execute(INDEX_STATE_SQL, {"table": index.table, "name": index.name}).fetchone()
    return IndexState(row[0], bool(row[1]), bool(row[2])) if row else None


def check_index(
    conn: psycopg.Connection[Any],
    migration: Migration,
    direction: str,
    index: IndexBuild,
    built: bool,
) -> None:
    """Before the statement: refuse an INVALID leftover of a killed or failed run, which
    IF NOT EXISTS would skip. After it: the index must exist on its table and be valid."""
    state = index_state(conn, index)
    where = f"{migration.ident} ({direction})"
    if state is not None and not state.valid:
        when = (
            "after CREATE INDEX CONCURRENTLY"
            if built
            else "before the statement ran: left by an interrupted or failed earlier run,"
            " which IF NOT EXISTS would skip"
        )
        raise InvalidIndexError(
            f"{where}: index {state.qualified} is INVALID (pg_index.indisvalid = false)"
            f" {when}. Queries do not use it; writes still maintain it. Nothing was"
            f" recorded. Fix: DROP INDEX CONCURRENTLY {state.qualified}; then run the"
            " command again"
        )
    if built and (state is None or not state.on_table):
        other = " (an index of that name belongs to another table)" if state else ""
        raise InvalidIndexError(
            f"{where}: after CREATE INDEX CONCURRENTLY there is no index {index.name!r} on"
            f" {index.table}{other}. Nothing was recorded; check the file and run again"
        )


def execute_alone(
    conn: psycopg.Connection[Any],
    migration: Migration,
    direction: str,
    body: str,
    index: IndexBuild | None,
) -> None:
    if index is not None:
        check_index(conn, migration, direction, index, built=False)
    conn.execute(body.encode("utf-8"))
    if index is not None:
        check_index(conn, migration, direction, index, built=True)


def autocommit_failure(
    conn: psycopg.Connection[Any],
    migration: Migration,
    direction: str,
    index: IndexBuild | None,
    exc: psycopg.Error,
    *,
    ms: int,
) -> MigrationError:
    """An SQL failure outside a transaction: recorded as success = false (up), which
    blocks later runs until checked by hand and 'repair'ed."""
    failure = sql_failure(migration, direction, exc)
    fix = "fix by hand, then run 'repair'"
    try:
        leftover = index_state(conn, index) if index is not None else None
        if leftover is not None and not leftover.valid:
            fix = (
                f"it left the INVALID index {leftover.qualified}: DROP INDEX CONCURRENTLY"
                f" {leftover.qualified}; then run 'repair' and run the command again"
            )
        message = (
            f"{failure}\n  non-transactional migration: parts may have been applied (an"
            f" INVALID index, for example); {fix}"
        )
        if direction != "up":
            return log_failure(
                conn, migration, direction, MigrationError(message), ms=ms, sqlstate=exc.sqlstate
            )
        conn.execute("RESET lock_timeout; RESET statement_timeout")
        with conn.transaction():
            record(conn, migration, direction, ms, success=False, error=str(failure))
    except psycopg.Error as record_exc:
        return MigrationError(f"{failure}\n  (could not record the failure: {record_exc})")
    return MigrationError(message)


def run_autocommit(
    conn: psycopg.Connection[Any], migration: Migration, direction: str, opts: Options
) -> dict[str, Any]:
    """One statement outside a transaction (CREATE INDEX CONCURRENTLY): no retry; an SQL
    failure is recorded (success = false) and blocks later runs until 'repair'. An INVALID
    index, found before or after the statement, records nothing: drop it and run again."""
    body = (migration.up if direction == "up" else migration.down) or ""
    statements = split_statements(body)
    index = concurrent_index(statements[0]) if statements else None
    set_timeouts(conn, migration, opts, local=False)
    start = time.monotonic()
    try:
        execute_alone(conn, migration, direction, body, index)
    except InvalidIndexError as exc:
        raise log_failure(conn, migration, direction, exc, ms=elapsed_ms(start)) from exc
    except psycopg.Error as exc:
        ms = elapsed_ms(start)
        raise autocommit_failure(conn, migration, direction, index, exc, ms=ms) from exc
    ms = elapsed_ms(start)
    conn.execute("RESET lock_timeout; RESET statement_timeout")
    with conn.transaction():
        record(conn, migration, direction, ms, success=True)
    return step_report(migration, direction, ms, 1)


def create_restore_point(
    conn: psycopg.Connection[Any], applied: dict[str, Applied], opts: Options, report: Report
) -> None:
    """Mark the WAL before a change, so point-in-time recovery can go back to it.

    Only on a primary that archives WAL (the name is useless without the archive). Named
    after the version the run starts from: mdus_before_<version>_<UTC time>.
    """
    row = conn.execute(
        "SELECT current_setting('archive_mode') IN ('on', 'always') AND NOT pg_is_in_recovery()"
    ).fetchone()
    if not opts.restore_point or not row or not row[0]:
        return
    start = max(applied, key=int) if applied else "000"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"mdus_before_{start}_{stamp}"
    try:
        lsn = conn.execute("SELECT pg_create_restore_point(%s)::text", (name,)).fetchone()
    except errors.InsufficientPrivilege as exc:
        raise MigrationError(
            f"cannot create the restore point {name}: {exc.diag.message_primary}. Run as a "
            "superuser, GRANT EXECUTE ON FUNCTION pg_create_restore_point(text) to this role, "
            "or pass --no-restore-point to go on without one"
        ) from exc
    report.restore_point = {"name": name, "lsn": lsn[0] if lsn else ""}
    say(opts, f"restore point {name} at {report.restore_point['lsn']}")


class NoticeEcho:
    """With --verbose: print the NOTICEs and WARNINGs migrations raise, with the file."""

    def __init__(self, opts: Options) -> None:
        self._stream = sys.stderr if opts.quiet else sys.stdout
        self.ident = ""

    def __call__(self, diag: psycopg.errors.Diagnostic) -> None:
        print(
            f"  {self.ident}: {diag.severity}: {diag.message_primary}",
            file=self._stream,
            flush=True,
        )


def execute_plan(
    conn: psycopg.Connection[Any],
    plan: Sequence[Migration],
    direction: str,
    opts: Options,
    report: Report,
) -> None:
    echo = NoticeEcho(opts)
    if opts.verbose:
        conn.add_notice_handler(echo)
    try:
        with BlockerWatch(opts.dsn, conn.info.backend_pid) as watch:
            for migration in plan:
                echo.ident = migration.ident
                verb = "applying" if direction == "up" else "rolling back"
                say(opts, f"{verb} {migration.ident}")
                reset_session(conn)
                if migration.transactional:
                    step = run_transactional(conn, migration, direction, opts, watch)
                else:
                    step = run_autocommit(conn, migration, direction, opts)
                report.applied.append(step)
                report.changed = True
                say(opts, f"  done in {step['ms']} ms (attempts: {step['attempts']})")
    finally:
        if opts.verbose:
            conn.remove_notice_handler(echo)


# --------------------------------------------------------------------------- commands


def locked_session(conn: psycopg.Connection[Any], opts: Options) -> None:
    acquire_lock(conn, opts.lock_wait)
    ensure_history(conn)


def cmd_migrate(
    conn: psycopg.Connection[Any], args: argparse.Namespace, opts: Options, report: Report
) -> None:
    migrations = load_migrations(args.dir)
    limit = resolve_target(args.target, migrations) if args.target else None
    if not opts.dry_run:
        locked_session(conn, opts)
    applied = read_applied(conn)
    verify(migrations, applied, report)
    pending = [m for m in migrations if m.version not in applied]
    plan = [m for m in pending if limit is None or m.number <= limit]
    report.pending = [m.ident for m in pending]
    if opts.dry_run or not plan:
        report.changed = bool(plan)
        report.applied = [{"version": m.version, "name": m.name, "direction": "up"} for m in plan]
        say(
            opts,
            "nothing to do" if not plan else "would apply: " + ", ".join(m.ident for m in plan),
        )
        return
    create_restore_point(conn, applied, opts, report)
    execute_plan(conn, plan, "up", opts, report)
    done = {step["version"] for step in report.applied}
    report.pending = [m.ident for m in pending if m.version not in done]


def cmd_rollback(
    conn: psycopg.Connection[Any], args: argparse.Namespace, opts: Options, report: Report
) -> None:
    migrations = load_migrations(args.dir)
    limit = resolve_target(args.target, migrations)
    if limit == 0 and not opts.dry_run and not args.yes_destroy_all:
        raise MigrationError(
            f"refusing to roll back to {args.target}: that runs every down section and drops"
            " the whole MDUS schema with all its data. Add --yes-destroy-all to confirm"
            " (--dry-run shows the plan); nothing was rolled back"
        )
    if not opts.dry_run:
        locked_session(conn, opts)
    applied = read_applied(conn)
    verify(migrations, applied, report)
    plan = [m for m in reversed(migrations) if m.version in applied and m.number > limit]
    irreversible = [m.ident for m in plan if m.down is None]
    if irreversible:
        raise MigrationError(
            f"refusing to roll back to {args.target}: no '-- migrate:down' section in"
            f" {', '.join(irreversible)}; nothing was rolled back"
        )
    if opts.dry_run or not plan:
        report.changed = bool(plan)
        report.applied = [{"version": m.version, "name": m.name, "direction": "down"} for m in plan]
        say(
            opts,
            "nothing to do" if not plan else "would roll back: " + ", ".join(m.ident for m in plan),
        )
        return
    create_restore_point(conn, applied, opts, report)
    execute_plan(conn, plan, "down", opts, report)


def cmd_repair(
    conn: psycopg.Connection[Any], args: argparse.Namespace, opts: Options, report: Report
) -> None:
    """Accept the files as they are: realign checksums and names, drop failed rows and
    rows whose file is gone. Every change is logged in schema_migrations_log."""
    migrations = {m.version: m for m in load_migrations(args.dir)}
    if not opts.dry_run:
        locked_session(conn, opts)
    applied = read_applied(conn)
    report.drift = find_drift(list(migrations.values()), applied)
    report.changed = bool(report.drift)
    if opts.dry_run or not report.drift:
        say(
            opts,
            "nothing to repair"
            if not report.drift
            else "would repair: " + ", ".join(d["version"] for d in report.drift),
        )
        return
    with conn.transaction():
        for item in report.drift:
            version, row = item["version"], applied[item["version"]]
            details: dict[str, Any] = {**item, "old_checksum": row.checksum}
            if item["problem"] in ("missing", "failed"):
                conn.execute(f"DELETE FROM {HISTORY_TABLE} WHERE version = %s", (version,))
            else:
                found = migrations[version]
                details["new_checksum"] = found.checksum
                conn.execute(
                    f"UPDATE {HISTORY_TABLE} SET checksum = %s, checksum_algorithm = %s,"
                    " name = %s WHERE version = %s",
                    (found.checksum, CHECKSUM_ALGORITHM, found.name, version),
                )
            log_action(conn, "repair", version, details)
            say(opts, f"repaired {version}: {item['detail']}")


def cmd_baseline(
    conn: psycopg.Connection[Any], args: argparse.Namespace, opts: Options, report: Report
) -> None:
    """Mark versions up to --version as applied without running them, on a database
    whose schema was created some other way (the seed's tooling, a restore)."""
    migrations = load_migrations(args.dir)
    limit = resolve_target(args.version, migrations)
    plan = [m for m in migrations if m.number <= limit]
    if not opts.dry_run:
        acquire_lock(conn, opts.lock_wait)
        convert_legacy_history(conn)
        ensure_history(conn)
    if read_applied(conn):
        raise MigrationError("baseline refused: schema_migrations already has versions")
    report.changed = bool(plan)
    report.applied = [{"version": m.version, "name": m.name, "direction": "baseline"} for m in plan]
    if opts.dry_run:
        say(opts, "would baseline: " + ", ".join(m.ident for m in plan))
        return
    with conn.transaction():
        for m in plan:
            conn.execute(
                f"INSERT INTO {HISTORY_TABLE} (version, name, checksum, checksum_algorithm,"
                " execution_ms, success, kind) VALUES (%s, %s, %s, %s, 0, true, 'baseline')",
                (m.version, m.name, m.checksum, CHECKSUM_ALGORITHM),
            )
            log_action(conn, "baseline", m.version, {"name": m.name, "checksum": m.checksum})
    say(opts, "baselined: " + ", ".join(m.ident for m in plan))


def convert_legacy_history(conn: psycopg.Connection[Any]) -> None:
    if not history_exists(conn):
        return
    row = conn.execute(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'checksum'",
        (HISTORY_TABLE,),
    ).fetchone()
    if row and not row[0]:
        conn.execute(f"ALTER TABLE {HISTORY_TABLE} RENAME TO schema_migrations_legacy")


def cmd_status(
    conn: psycopg.Connection[Any], args: argparse.Namespace, opts: Options, report: Report
) -> None:
    migrations = load_migrations(args.dir)
    applied = read_applied(conn)
    report.drift = find_drift(migrations, applied)
    problems = {d["version"]: d["problem"] for d in report.drift}
    rows: dict[str, dict[str, Any]] = {}
    for m in migrations:
        row = applied.get(m.version)
        rows[m.version] = {
            "version": m.version,
            "name": m.name,
            "state": problems.get(m.version, "applied" if row else "pending"),
            "applied_at": row.applied_at if row else None,
            "applied_by": row.applied_by if row else None,
            "execution_ms": row.execution_ms if row else None,
            "kind": row.kind if row else None,
            "has_down": m.down is not None,
            "transactional": m.transactional,
            "checksum": m.checksum,
        }
    for version, row in applied.items():
        if version not in rows:
            rows[version] = {
                **asdict(row),
                "state": problems.get(version, "missing"),
                "has_down": None,
                "transactional": None,
            }
    report.migrations = [rows[v] for v in sorted(rows, key=int)]
    report.pending = [
        f"{r['version']}_{r['name']}" for r in report.migrations if r["state"] == "pending"
    ]
    if not opts.quiet:
        print_status(report.migrations, args.verbose)
    if report.drift:
        report.exit_code = EXIT_DRIFT


def print_status(rows: Sequence[dict[str, Any]], verbose: bool) -> None:
    header = f"{'VERSION':<8} {'NAME':<32} {'STATE':<9} {'APPLIED AT':<26}"
    if verbose:
        header += f" {'BY':<14} {'MS':>7} {'DOWN':<5} {'TX':<4} CHECKSUM"
    print(header)
    for r in rows:
        line = (
            f"{r['version']:<8} {r['name']:<32} {r['state']:<9} {(r['applied_at'] or '-')[:26]:<26}"
        )
        if verbose:
            ms = "-" if r["execution_ms"] is None else str(r["execution_ms"])
            down = {True: "yes", False: "no", None: "?"}[r["has_down"]]
            tx = {True: "yes", False: "no", None: "?"}[r["transactional"]]
            line += (
                f" {(r['applied_by'] or '-'):<14} {ms:>7} {down:<5} {tx:<4} {r['checksum'][:12]}"
            )
        print(line)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    print(", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no migrations")


# --------------------------------------------------------------------------- CLI


class Parser(argparse.ArgumentParser):
    """Usage errors exit 1: exit code 2 means 'changed' for this tool."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


EPILOG = """exit codes:
  0  nothing to do (or nothing changed)
  1  error: SQL failure (rolled back), bad usage, connection failure, refused file or rollback
  2  changed: migrations applied / rolled back / repaired (--dry-run: would change)
  3  refused: drift (applied file edited, missing or failed) or out-of-order versions
  4  lock: migration lock held elsewhere past --lock-wait, or lock_timeout retries spent

restore point: migrate and rollback first create one (pg_create_restore_point) named
mdus_before_<version>_<UTC time> on a primary that archives WAL (--no-restore-point: none);
point-in-time recovery can return to it (docs/runbooks/pitr.md).

file markers: '-- migrate:up', '-- migrate:down', '-- migrate:no-transaction',
'-- migrate:lock-timeout 10s', '-- migrate:statement-timeout 1h'. Files are checked
before anything runs: no BEGIN/COMMIT/ROLLBACK/START TRANSACTION/END statements; a
no-transaction section is exactly one statement, and a CREATE INDEX CONCURRENTLY there
names its index, which must be valid afterwards (an INVALID one is refused: DROP INDEX
CONCURRENTLY it and run again). Session settings do not carry over between migrations.

environment: MDUS_MIGRATE_NO_TRANSACTION_LOCK_TIMEOUT sets the default of
--no-transaction-lock-timeout.
Connection: libpq (PGHOST, PGPORT, PGDATABASE, PGUSER, PGSSLMODE, ~/.pgpass) or --dsn."""


def build_parser() -> argparse.ArgumentParser:
    common = Parser(add_help=False)
    common.add_argument("--dsn", default="", help="libpq connection string (default: PG*)")
    common.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="migrations directory")
    common.add_argument("--json", action="store_true", help="print one JSON document")
    common.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    common.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="more detail; show the NOTICEs and WARNINGs migrations raise",
    )
    common.add_argument(
        "--lock-wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for the migration lock (default 60)",
    )
    common.add_argument(
        "--lock-timeout", default="5s", help="lock_timeout per migration (default 5s)"
    )
    common.add_argument(
        "--no-transaction-lock-timeout",
        metavar="TIMEOUT",
        default=os.environ.get(NO_TX_LOCK_TIMEOUT_ENV) or NO_TX_LOCK_TIMEOUT_DEFAULT,
        help="lock_timeout of a '-- migrate:no-transaction' statement such as CREATE INDEX"
        " CONCURRENTLY, which waits for older transactions (default"
        f" ${NO_TX_LOCK_TIMEOUT_ENV} or {NO_TX_LOCK_TIMEOUT_DEFAULT})",
    )
    common.add_argument(
        "--statement-timeout", default="1h", help="statement_timeout per migration (default 1h)"
    )
    common.add_argument(
        "--lock-retries",
        type=int,
        default=5,
        help="retries after a lock timeout, with backoff (default 5)",
    )
    parser = Parser(
        prog="migrate.py",
        description="MDUS schema migration runner",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    sub.add_parser("status", parents=[common], help="show applied, pending and drifted versions")
    mig = sub.add_parser("migrate", parents=[common], help="apply pending migrations")
    mig.add_argument("--target", help="stop after this version (e.g. 002)")
    rb = sub.add_parser("rollback", parents=[common], help="run down sections back to a version")
    rb.add_argument("--target", required=True, help="version to keep (0: roll back everything)")
    rb.add_argument(
        "--yes-destroy-all",
        action="store_true",
        help="confirm --target 0: roll back every migration, dropping the schema and its data",
    )
    for changing in (mig, rb):
        changing.add_argument(
            "--no-restore-point",
            action="store_true",
            help="no restore point before the change (one is made when WAL is archived)",
        )
    sub.add_parser("repair", parents=[common], help="accept edited/missing/failed versions")
    bl = sub.add_parser("baseline", parents=[common], help="record versions without running")
    bl.add_argument("--version", required=True, help="last version already in the database")
    return parser


def run(args: argparse.Namespace) -> Report:
    opts = Options(
        dsn=args.dsn,
        lock_wait=args.lock_wait,
        lock_timeout=args.lock_timeout,
        statement_timeout=args.statement_timeout,
        lock_retries=args.lock_retries,
        dry_run=args.dry_run,
        quiet=args.json,
        restore_point=not getattr(args, "no_restore_point", False),
        no_tx_lock_timeout=args.no_transaction_lock_timeout,
        verbose=args.verbose,
    )
    report = Report(command=args.command, dry_run=args.dry_run)
    conn: psycopg.Connection[Any] | None = None
    try:
        conn = connect(args.dsn)
        if args.command == "status":
            cmd_status(conn, args, opts, report)
        elif args.command == "migrate":
            cmd_migrate(conn, args, opts, report)
        elif args.command == "rollback":
            cmd_rollback(conn, args, opts, report)
        elif args.command == "repair":
            cmd_repair(conn, args, opts, report)
        else:
            cmd_baseline(conn, args, opts, report)
        if report.changed:
            report.exit_code = EXIT_CHANGED
        applied = read_applied(conn)
        report.current = max(applied, key=int) if applied else None
    except MigrationError as exc:
        report.error, report.exit_code = str(exc), exc.exit_code
    except psycopg.Error as exc:
        report.error, report.exit_code = f"database error: {exc}", EXIT_ERROR
    finally:
        if conn is not None:
            release_lock(conn)
            conn.close()
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = run(args)
    if args.json:
        print(json.dumps(asdict(report), indent=2, default=str))
    if report.error:
        print(f"migrate.py {args.command}: {report.error}", file=sys.stderr)
    return report.exit_code


if __name__ == "__main__":
    sys.exit(main())
