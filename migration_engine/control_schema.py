"""Versioned control-schema migrations: the one mechanism that creates and upgrades the control tables.

Why: the control tables (flags, stats, ledger, gate results, alerts, step state, backfill,
consistency and Slack state) used to be created by four separate "ensure tables" routines, with two
different advisory locks and no record of what a database has. A table could not be changed safely,
and a worker could not tell an old control schema from a current one. Now:

* ``include/sql/control/migrations/NNN_name.sql`` are applied in number order, each recorded in
  ``schema_version`` (version, name, sha256 of the file text, applied_at, applied_by);
* :func:`upgrade` takes one session advisory lock (the name the unversioned code used, so old and
  new creators serialise), applies the pending files and records them. A file without
  ``CONCURRENTLY`` runs as one transaction together with its ``schema_version`` row (all or
  nothing); a file with ``CREATE INDEX CONCURRENTLY`` runs statement by statement in autocommit,
  then is recorded (its statements are idempotent, so an interrupted run is simply re-run);
* every statement goes through :class:`~migration_engine.ddl.DdlExecutor`: ``lock_timeout`` and
  ``statement_timeout`` first, a lock timeout retried with jittered backoff, each retry logging who
  blocks. A long transaction on the legacy database makes an upgrade wait, not fail, until
  ``ddl.max_lock_retries`` is spent;
* an applied file whose text changed, or a database newer than the code, is refused before
  anything runs; :func:`plan` returns the exact SQL an upgrade would send (dry runs);
* code that only *uses* the control tables calls :func:`require_current` (two catalog reads),
  which refuses clearly when ``migration_setup`` has not brought the schema up to date - DDL on the
  legacy database happens in one explicit place, not lazily in workers or the API server.

The first migrations are idempotent (``IF NOT EXISTS``, ``OR REPLACE``, ``ON CONFLICT DO
NOTHING``), so a control schema made by the unversioned code is adopted in place: the files run as
no-ops over the existing objects, every row stays, and ``schema_version`` is filled in.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

import psycopg2
import psycopg2.extensions as ext

from migration_engine import sqlfiles
from migration_engine.config import Ddl
from migration_engine.ddl import DdlExecutor
from migration_engine.errors import MigrationError, Refused, VerificationError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = "control/migrations"
LOCK_NAME = "migration_control_schema"
_FILE_RE = re.compile(r"^(?P<version>\d{3})_(?P<slug>[a-z0-9_]+)\.sql$")
_CONCURRENTLY_RE = re.compile(r"\bCONCURRENTLY\b", re.IGNORECASE)


class ControlSchemaError(MigrationError):
    """The control schema cannot be created, upgraded or used as it is; the message says what to do."""


class ControlSchemaMissing(ControlSchemaError, Refused):
    """The control schema does not exist: migration_setup has not run against this database."""


class ControlSchemaOutdated(ControlSchemaError, Refused):
    """The control schema is older than the code: migration_setup must upgrade it first."""


class ControlSchemaTooNew(ControlSchemaError, Refused):
    """The database has migrations this code does not know: older code must not touch it."""


class MigrationEdited(ControlSchemaError, Refused):
    """A migration file that was already applied has changed: shipped migrations are never edited."""


@dataclass(frozen=True)
class Migration:
    """One numbered file of include/sql/control/migrations."""

    version: int
    name: str  # file name, e.g. "002_control_indexes.sql"
    text: str
    checksum: str  # sha256 of the file text

    @property
    def path(self) -> str:
        return f"{MIGRATIONS_DIR}/{self.name}"

    @property
    def transactional(self) -> bool:
        """False when a statement is ``... CONCURRENTLY`` (cannot run in a transaction block)."""
        return not any(_CONCURRENTLY_RE.search(_code(s)) for s in sqlfiles.split_statements(self.text))


@dataclass(frozen=True)
class Applied:
    """One row of schema_version."""

    version: int
    name: str
    checksum: str
    applied_at: datetime
    applied_by: str


@dataclass(frozen=True)
class Status:
    """What a database's control schema has, next to what this code knows."""

    schema: str
    exists: bool
    versioned: bool  # has a schema_version table
    other_tables: int  # tables besides schema_version (an unversioned schema has some)
    applied: tuple[Applied, ...]
    known: tuple[Migration, ...] = field(repr=False)

    @property
    def version(self) -> int:
        return max((a.version for a in self.applied), default=0)

    @property
    def latest(self) -> int:
        return max((m.version for m in self.known), default=0)

    @property
    def unversioned_layout(self) -> bool:
        """Made by the code before versioned migrations: tables, no schema_version rows."""
        return self.exists and not self.applied and self.other_tables > 0

    def pending(self, target: int | None = None) -> list[Migration]:
        done = {a.version for a in self.applied}
        upto = self.latest if target is None else target
        return [m for m in self.known if m.version not in done and m.version <= upto]

    def describe(self) -> str:
        if not self.exists:
            return f'control schema "{self.schema}" does not exist'
        extra = " (created before versioned migrations)" if self.unversioned_layout else ""
        return f'control schema "{self.schema}" is at version {self.version}{extra}'


# --- the files ----------------------------------------------------------------------------------
def migrations() -> tuple[Migration, ...]:
    """The migration files in order; numbering must be 001, 002, ... without gaps or duplicates."""
    folder = sqlfiles.sql_dir() / MIGRATIONS_DIR
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        m = _FILE_RE.match(path.name)
        if not m:
            raise ControlSchemaError(f"{path}: a control-schema migration is named NNN_lowercase_words.sql")
        text = path.read_text()
        found.append(Migration(int(m["version"]), path.name, text, hashlib.sha256(text.encode()).hexdigest()))
    numbers = [m.version for m in found]
    if numbers != list(range(1, len(found) + 1)):
        raise ControlSchemaError(f"control-schema migrations in {folder} must be numbered 1..N without gaps or "
                                 f"duplicates; found {numbers}")
    return tuple(found)


def _code(stmt: str) -> str:
    return "\n".join(ln for ln in stmt.splitlines() if not ln.lstrip().startswith("--"))


def _strip_leading_comments(stmt: str) -> str:
    lines = stmt.splitlines()
    while lines and (not lines[0].strip() or lines[0].lstrip().startswith("--")):
        lines.pop(0)
    return "\n".join(lines).strip()


def statements(conn, migration: Migration, schema: str) -> list[str]:
    """The file's statements rendered for ``schema``, exactly as they are sent."""
    with conn.cursor() as cur:
        text = sqlfiles.render(cur, migration.path, {"schema": schema})
    return [_strip_leading_comments(s) for s in sqlfiles.split_statements(text)]


# --- reading the state --------------------------------------------------------------------------
def status(conn, schema: str) -> Status:
    """Catalog read (plus schema_version when it exists); leaves an idle connection idle."""
    was_idle = conn.info.transaction_status == ext.TRANSACTION_STATUS_IDLE
    try:
        with conn.cursor() as cur:
            sqlfiles.run(cur, "control_schema/state.sql", params={"schema_name": schema})
            exists, versioned, other_tables = cur.fetchone()
            applied: tuple[Applied, ...] = ()
            if versioned:
                sqlfiles.run(cur, "control_schema/applied.sql", {"schema": schema})
                applied = tuple(Applied(*row) for row in cur.fetchall())
    finally:
        if was_idle and not conn.autocommit:
            conn.rollback()  # read-only: end the transaction the reads opened
    return Status(schema, bool(exists), bool(versioned), int(other_tables), applied, migrations())


def current_version(conn, schema: str) -> int:
    """The highest applied migration (0: no schema, or one made before versioned migrations)."""
    return status(conn, schema).version


def check(st: Status) -> None:
    """Refuse a database newer than the code, or an applied file whose text has changed since."""
    known = {m.version: m for m in st.known}
    newer = [a for a in st.applied if a.version not in known]
    if newer:
        names = ", ".join(f"{a.version} ({a.name}, applied {a.applied_at:%Y-%m-%d %H:%M} by {a.applied_by})"
                          for a in newer)
        raise ControlSchemaTooNew(
            f"{st.describe()}, newer than this code knows (latest {st.latest}); unknown migrations: {names}. "
            f"Deploy the code that shipped them; older code must not use or change this control schema")
    edited = [(a, known[a.version]) for a in st.applied
              if (a.name, a.checksum) != (known[a.version].name, known[a.version].checksum)]
    if edited:
        names = "; ".join(f"{a.version}: applied as {a.name} (sha256 {a.checksum[:12]}), the code has {m.name} "
                          f"(sha256 {m.checksum[:12]})" for a, m in edited)
        raise MigrationEdited(
            f"control-schema migrations already applied to \"{st.schema}\" have changed since: {names}. A "
            f"shipped migration is never edited: restore the file from version control and put the change in "
            f"a new numbered file under include/sql/{MIGRATIONS_DIR}")


def require_current(conn, schema: str) -> Status:
    """For code that uses the control tables: refuse clearly unless the schema is fully up to date."""
    st = status(conn, schema)
    if not st.exists:
        raise ControlSchemaMissing(f'control schema "{schema}" does not exist in this database; run the '
                                   "migration_setup DAG first")
    check(st)
    pending = st.pending()
    if pending:
        raise ControlSchemaOutdated(
            f"{st.describe()}, code needs {st.latest}: run migration_setup (pending: "
            f"{', '.join(m.name for m in pending)})")
    return st


# --- applying ------------------------------------------------------------------------------------
def upgrade(conn, schema: str, ddl: Ddl | None = None, *, target: int | None = None,
            applied_by: str | None = None, sleep: Callable[[float], None] = time.sleep) -> list[Migration]:
    """Apply every pending migration (up to ``target``) and record it; returns what was applied.

    Cheap when current (catalog reads, no lock). Safe to call concurrently: one caller at a time
    holds the advisory lock, the others wait for it and then find nothing to do.
    """
    if conn.info.transaction_status != ext.TRANSACTION_STATUS_IDLE:
        raise ControlSchemaError("upgrading the control schema needs a connection with no open transaction "
                                 "(commit first): DDL runs in autocommit, one short transaction per step")
    ddl = ddl or Ddl()
    st = status(conn, schema)
    check(st)
    if not st.pending(target):
        return []
    prev_autocommit = conn.autocommit
    ex = DdlExecutor(conn, ddl, sleep=sleep)
    saved = ex.query_dicts("control_schema/session_timeouts.sql")[0]
    try:
        _acquire_lock(ex, ddl, sleep)
        try:
            return _apply(ex, schema, target, applied_by)
        finally:
            try:
                if conn.info.transaction_status != ext.TRANSACTION_STATUS_IDLE:
                    conn.rollback()
                ex.query("common/advisory_unlock.sql", params={"lock_name": LOCK_NAME})
            except psycopg2.Error as exc:  # the lock ends with the session anyway; keep the real error
                log.warning("could not release the control-schema upgrade lock: %s", exc)
    finally:
        _restore(ex, saved, prev_autocommit)


def _restore(ex: DdlExecutor, timeouts: dict, autocommit: bool) -> None:
    """Give the caller its connection back as it was (a failure here must not mask the real one)."""
    conn = ex.conn
    try:
        if conn.info.transaction_status != ext.TRANSACTION_STATUS_IDLE:
            conn.rollback()
        ex.query("ddl/set_timeouts.sql", params=timeouts)
        conn.autocommit = autocommit
    except psycopg2.Error as exc:
        log.warning("could not restore the connection's settings after the control-schema upgrade: %s", exc)


def plan(conn, schema: str, ddl: Ddl | None = None, *, target: int | None = None) -> list[str]:
    """The exact statements :func:`upgrade` would send now (the same code path, nothing executed)."""
    ddl = ddl or Ddl()
    st = status(conn, schema)
    check(st)
    if not st.pending(target):
        return []
    prev_autocommit = conn.autocommit
    try:
        ex = DdlExecutor(conn, ddl, planning=True)
        _apply(ex, schema, target, None)
        return ex.recorded
    finally:
        conn.autocommit = prev_autocommit


def _acquire_lock(ex: DdlExecutor, ddl: Ddl, sleep: Callable[[float], None]) -> None:
    """Poll pg_try_advisory_lock (a blocked pg_advisory_lock would deadlock with the holder's
    CREATE INDEX CONCURRENTLY, which waits for every open transaction) for up to statement_timeout."""
    params = {"lock_name": LOCK_NAME}
    deadline = time.monotonic() + ddl.statement_timeout.total_seconds()
    delay = 0.05
    while not ex.query("common/advisory_try_lock.sql", params=params)[0][0]:
        if time.monotonic() >= deadline:
            holders = ex.query_dicts("control_schema/lock_holder.sql", params=params)
            who = "; ".join(f"pid {h['pid']} ({h['application_name'] or 'no application_name'}, {h['state']}): "
                            f"{h['query']}" for h in holders) or "it was released just now"
            raise ControlSchemaError(
                f"another control-schema upgrade held the lock {LOCK_NAME!r} for longer than "
                f"ddl.statement_timeout ({ddl.statement_timeout}); holder: {who}. Let it finish (or end it) "
                f"and run migration_setup again")
        sleep(delay)
        delay = min(delay * 2, 1.0)


def _apply(ex: DdlExecutor, schema: str, target: int | None, applied_by: str | None) -> list[Migration]:
    """Under the lock (or planning): bootstrap schema_version, re-read, apply and record what is pending."""
    conn = ex.conn
    for stmt in _rendered(conn, "control_schema/version_table.sql", schema):
        ex.execute_sql(stmt, what=f"control schema {schema}: create schema_version", schema=schema)
    st = status(conn, schema)  # planning on a new database: the schema is not there yet, reads say so
    check(st)
    pending = st.pending(target)
    if pending and st.unversioned_layout:
        log.info("%s: adopting it in place (the first migrations are no-ops over existing objects)", st.describe())
    applied: list[Migration] = []
    for m in pending:
        started = time.monotonic()
        what = f"control-schema migration {m.name} on {schema}"
        stmts = statements(conn, m, schema)
        record = ex.render("control_schema/record.sql", {"schema": schema}, {
            "version": m.version, "name": m.name, "checksum": m.checksum, "applied_by": applied_by})
        if m.transactional:
            ex.execute_transaction([*stmts, record], what=what, schema=schema)
        else:
            drop_leftovers = partial(ex.drop_invalid_indexes, schema)
            for stmt in stmts:
                ex.execute_sql(stmt, what=what, schema=schema,
                               before=drop_leftovers if _CONCURRENTLY_RE.search(stmt) else None)
            ex.execute_sql(record, what=what, schema=schema)
        applied.append(m)
        if not ex.planning:
            log.info("control schema %s: applied migration %s in %.2fs", schema, m.name, time.monotonic() - started)
    if applied and not ex.planning:
        problems = verify(conn, schema, target)
        if problems:
            raise VerificationError(problems, step_id=f"control schema {schema}")
    return applied


def _rendered(conn, name: str, schema: str) -> list[str]:
    with conn.cursor() as cur:
        text = sqlfiles.render(cur, name, {"schema": schema})
    return [_strip_leading_comments(s) for s in sqlfiles.split_statements(text)]


# --- verifying -----------------------------------------------------------------------------------
_CREATES = {
    "table": re.compile(r'CREATE TABLE IF NOT EXISTS "\{schema\}"\.(\w+)', re.IGNORECASE),
    "index": re.compile(r"CREATE (?:UNIQUE )?INDEX (?:CONCURRENTLY )?IF NOT EXISTS (\w+)", re.IGNORECASE),
    "function": re.compile(r'CREATE OR REPLACE FUNCTION "\{schema\}"\.(\w+)', re.IGNORECASE),
    "trigger": re.compile(r"CREATE TRIGGER (\w+)", re.IGNORECASE),
}
_DROPS = {
    "table": re.compile(r'DROP TABLE IF EXISTS "\{schema\}"\.(\w+)', re.IGNORECASE),
    "index": re.compile(r'DROP INDEX (?:CONCURRENTLY )?IF EXISTS "\{schema\}"\.(\w+)', re.IGNORECASE),
    "function": re.compile(r'DROP FUNCTION IF EXISTS "\{schema\}"\.(\w+)', re.IGNORECASE),
}


def expected_objects(upto: int | None = None) -> set[tuple[str, str]]:
    """(kind, name) of every object the migrations up to ``upto`` leave behind, read from the files."""
    wanted: set[tuple[str, str]] = {("table", "schema_version")}
    for m in migrations():
        if upto is not None and m.version > upto:
            break
        code = "\n".join(_code(s) for s in sqlfiles.split_statements(m.text))
        for stmt in sqlfiles.split_statements(code):
            for kind, rx in _DROPS.items():
                wanted -= {(kind, n) for n in rx.findall(stmt)}
            for kind, rx in _CREATES.items():
                wanted |= {(kind, n) for n in rx.findall(stmt)}
    return wanted


def verify(conn, schema: str, target: int | None = None) -> list[str]:
    """Problems with the control schema as the migrations up to ``target`` (default: all) describe it.

    Empty when everything is in place: every migration recorded, every object they create present and valid.
    """
    st = status(conn, schema)
    if not st.exists:
        return [f'control schema "{schema}" does not exist']
    try:
        check(st)
    except ControlSchemaError as exc:
        return [str(exc)]
    problems = [f"migration {m.name} is not applied" for m in st.pending(target)]
    with conn.cursor() as cur:
        sqlfiles.run(cur, "control_schema/objects.sql", params={"schema_name": schema})
        found = {(kind, name): valid for kind, name, valid in cur.fetchall()}
    if not conn.autocommit:
        conn.rollback()
    wanted = expected_objects(st.version)
    for kind, name in sorted(wanted):
        if (kind, name) not in found:
            problems.append(f"{kind} {schema}.{name} is missing")
    for (kind, name), valid in sorted(found.items()):
        if not valid:
            problems.append(f"{kind} {schema}.{name} is "
                            f"{'INVALID (an interrupted build)' if kind == 'index' else 'disabled'}")
    return problems
