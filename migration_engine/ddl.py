"""The DDL executor: every schema change goes through here, so every one of them is lock-safe.

Why: an ``ALTER TABLE`` that waits for a lock sits in the lock queue, and every plain ``SELECT`` on
that table queues behind it - a long transaction elsewhere turns a millisecond catalog change into
an outage. So, like pgroll and strong_migrations:

* every statement runs with ``lock_timeout`` and ``statement_timeout`` (config ``ddl.*``, set with
  ``set_config`` from ``ddl/set_timeouts.sql``); a lock timeout (SQLSTATE 55P03) gives up quickly,
  lets the queue drain, and is retried with jittered exponential backoff, each retry logged with
  the sessions holding locks on the table;
* the connection is in autocommit: each statement is its own short transaction, and
  ``CREATE INDEX CONCURRENTLY`` can run at all;
* an index is built ``CONCURRENTLY``; an INVALID leftover of an interrupted build is dropped
  concurrently and rebuilt; progress is polled from ``pg_stat_progress_create_index`` on a second
  connection;
* backfills update key-range batches (walking the key's index) in short transactions.

A *planning* executor runs the same code but only records the exact SQL it would send (rendered
with ``cursor.mogrify``); catalog reads still run. That is how a step's ``plan`` is guaranteed to
be what its ``apply`` sends.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.errors
from psycopg2 import extensions, sql

from migration_engine import sqlfiles
from migration_engine.config import Ddl, TableRef
from migration_engine.errors import MigrationError

log = logging.getLogger(__name__)

LOCK_NOT_AVAILABLE = "55P03"


class DdlError(MigrationError):
    """A schema change could not be made; the message says which one and why."""


class LockRetriesExhausted(DdlError):
    """Every attempt hit lock_timeout: something holds a conflicting lock for too long."""


class IndexDefinitionMismatch(DdlError):
    """A valid index with the wanted name exists but is not the index the config describes."""


def _ms(td) -> str:
    return f"{int(round(td.total_seconds() * 1000))}ms"


@dataclass(frozen=True)
class IndexSpec:
    schema: str
    table: str
    name: str
    columns: tuple[str, ...]
    unique: bool = False
    where_column: str | None = None
    where_not_null: bool = False
    where_equals: Any = None

    @property
    def template(self) -> str:
        kind = "create_index_unique" if self.unique else "create_index"
        if self.where_column and self.where_not_null:
            return f"ddl/{kind}_where_not_null.sql"
        if self.where_column:
            return f"ddl/{kind}_where_equals.sql"
        return f"ddl/{kind}.sql"

    def identifiers(self) -> dict[str, Any]:
        ids: dict[str, Any] = {
            "schema": self.schema, "table": self.table, "index": self.name,
            "columns": sql.SQL(", ").join(sql.Identifier(c) for c in self.columns),
        }
        if self.where_column:
            ids["where_column"] = self.where_column
        return ids

    def params(self) -> dict[str, Any]:
        return {"where_value": self.where_equals} if self.where_column and not self.where_not_null else {}

    def mismatch(self, state: dict[str, Any]) -> str | None:
        """Why an existing valid index is not this one (None when it matches)."""
        problems = []
        if state["table_name"] != self.table:
            problems.append(f"it is on table {state['table_name']}, not {self.table}")
        if list(state["columns"]) != list(self.columns):
            problems.append(f"its columns are {list(state['columns'])}, config wants {list(self.columns)}")
        if bool(state["indisunique"]) != self.unique:
            problems.append("uniqueness differs")
        predicate = state["predicate"]
        if self.where_column is None and predicate:
            problems.append(f"it is partial (WHERE {predicate}) but config wants a full index")
        elif self.where_column and (not predicate or self.where_column not in predicate):
            problems.append(f"its predicate is {predicate!r}, config wants one on {self.where_column}")
        return "; ".join(problems) or None


class DdlExecutor:
    """Runs (or, when planning, records) schema changes on one autocommit connection."""

    def __init__(
        self,
        conn,
        ddl: Ddl,
        *,
        planning: bool = False,
        connect: Callable[[], Any] | None = None,
        progress_interval: float = 5.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ):
        if conn.info.transaction_status != extensions.TRANSACTION_STATUS_IDLE:
            raise DdlError("the DDL executor needs a connection with no open transaction "
                           "(DDL runs in autocommit, one short transaction per statement)")
        conn.autocommit = True
        self.conn = conn
        self.ddl = ddl
        self.planning = planning
        self.connect = connect
        self.progress_interval = progress_interval
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.actor = "migration"           # who the audit ledger names (StepRunner sets it)
        self.context: dict[str, Any] = {}  # dag/run/task ids for ledger entries
        self.recorded: list[str] = []      # every statement sent (or, planning, that would be sent)
        self.lock_retries = 0              # lock-timeout retries since the last reset_counters()
        self.invalid_indexes_rebuilt = 0
        self._timeouts_set = False

    # --- plumbing ---------------------------------------------------------------------------
    def reset_counters(self) -> None:
        self.recorded = []
        self.lock_retries = 0
        self.invalid_indexes_rebuilt = 0

    def render(self, name: str, identifiers: dict | None = None, params: dict | None = None) -> str:
        """The statement exactly as it is sent: rendered, without the file's comment lines."""
        with self.conn.cursor() as cur:
            text = sqlfiles.render(cur, name, identifiers, params)
        return "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("--")).strip()

    def query(self, name: str, identifiers: dict | None = None, params: dict | None = None) -> list[tuple]:
        """Catalog/data reads: run in planning mode too (they change nothing)."""
        with self.conn.cursor() as cur:
            sqlfiles.run(cur, name, identifiers, params)
            return cur.fetchall() if cur.description else []

    def query_dicts(self, name: str, identifiers: dict | None = None, params: dict | None = None) -> list[dict]:
        with self.conn.cursor() as cur:
            sqlfiles.run(cur, name, identifiers, params)
            cols = [d.name for d in cur.description]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

    def ensure_timeouts(self) -> None:
        """Set lock_timeout/statement_timeout once per executor (recorded in the plan too)."""
        if self._timeouts_set:
            return
        params = {"lock_timeout": _ms(self.ddl.lock_timeout), "statement_timeout": _ms(self.ddl.statement_timeout)}
        text = self.render("ddl/set_timeouts.sql", params=params)
        self.recorded.append(text)
        if not self.planning:
            with self.conn.cursor() as cur:
                cur.execute(text)
        self._timeouts_set = True

    def backoff(self, attempt: int) -> float:
        """Equal-jitter exponential backoff: half the capped delay fixed, half random."""
        base = self.ddl.retry_backoff_base.total_seconds()
        cap = min(self.ddl.retry_backoff_max.total_seconds(), base * (2 ** (attempt - 1)))
        return cap / 2 + self.rng.uniform(0, cap / 2)

    def lock_holders(self, table: TableRef | None, schema: str | None = None) -> list[dict]:
        """Sessions holding or waiting for locks on ``table`` (or, without one, on any relation in ``schema``)."""
        if table is not None:
            name, params = "ddl/lock_holders.sql", {"qualified_name": _qualified(table)}
        elif schema is not None:
            name, params = "ddl/schema_lock_holders.sql", {"schema_name": schema}
        else:
            return []
        try:
            return self.query_dicts(name, params=params)
        except psycopg2.Error as exc:  # diagnostics must never mask the real problem
            log.debug("could not list lock holders: %s", exc)
            return []

    def open_transactions(self) -> list[dict]:
        """The oldest other open transactions in this database: what CREATE INDEX CONCURRENTLY waits for."""
        try:
            return self.query_dicts("ddl/open_transactions.sql")
        except psycopg2.Error as exc:
            log.debug("could not list open transactions: %s", exc)
            return []

    def describe_blockers(self, table: TableRef | None, schema: str | None = None) -> str:
        """Who the statement was waiting for, for the retry log line and the final error."""
        holders = self.lock_holders(table, schema)
        described = _describe_sessions(holders) or "no other session holds a lock on it now"
        if not holders:
            older = self.open_transactions()
            if older:
                described += ("; open transactions it may wait for (CREATE INDEX CONCURRENTLY waits for "
                              "every older transaction): " + _describe_sessions(older))
        return described

    def with_lock_retry(self, what: str, table: TableRef | None, fn: Callable[[], Any], *,
                        schema: str | None = None) -> Any:
        """Call ``fn``; on lock timeout back off and call it again, up to ddl.max_lock_retries times.

        ``schema`` names where to look for the blockers when the statement has no single ``table``.
        """
        scope = table if table is not None else (f"schema {schema}" if schema else None)
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except psycopg2.errors.LockNotAvailable as exc:
                if self.conn.info.transaction_status != extensions.TRANSACTION_STATUS_IDLE:
                    self.conn.rollback()
                described = self.describe_blockers(table, schema)
                if attempt > self.ddl.max_lock_retries:
                    raise LockRetriesExhausted(
                        f"{what}: gave up after {attempt} attempts, each stopped by lock_timeout "
                        f"{_ms(self.ddl.lock_timeout)} (ddl.max_lock_retries={self.ddl.max_lock_retries}). "
                        f"Lock holders on {scope}: {described}. Find and end the long transaction, "
                        f"or retry in a quieter period. ({str(exc).strip()})"
                    ) from exc
                delay = self.backoff(attempt)
                self.lock_retries += 1
                log.warning(
                    "lock_timeout (%s) hit: %s - retry %d/%d in %.2fs; lock holders on %s: %s",
                    _ms(self.ddl.lock_timeout), what, attempt, self.ddl.max_lock_retries, delay, scope, described,
                )
                self.sleep(delay)

    def _send(self, text: str) -> int:
        with self.conn.cursor() as cur:
            cur.execute(text)
            return cur.rowcount

    def execute(self, name: str, identifiers: dict | None = None, params: dict | None = None, *,
                table: TableRef | None = None, what: str | None = None) -> int:
        """Send one statement (with timeouts and lock-timeout retry); returns the row count."""
        self.ensure_timeouts()
        text = self.render(name, identifiers, params)
        self.recorded.append(text)
        if self.planning:
            return 0
        label = what or f"{name} on {table}"
        log.info("executing: %s", text)
        return self.with_lock_retry(label, table, lambda: self._send(text))

    def action(self, description: str, fn: Callable[[], Any]) -> Any:
        """A change that is not one SQL file (a flag with its ledger entry, pg_dump, a restore):
        recorded as ``description`` (the exact SQL or command) and, unless planning, run."""
        self.recorded.append(description)
        if self.planning:
            return None
        log.info("executing: %s", description)
        return fn()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Statements sent inside run in one transaction: all or nothing (planning: just recorded)."""
        if self.planning:
            yield
            return
        self.conn.autocommit = False
        try:
            yield
            self.conn.commit()
        except BaseException:
            self.conn.rollback()
            raise
        finally:
            self.conn.autocommit = True

    def execute_sql(self, text: str, *, what: str, table: TableRef | None = None, schema: str | None = None,
                    before: Callable[[], None] | None = None) -> int:
        """Send one already-rendered statement (e.g. a statement of a control-schema migration file).

        Same guarantees as :meth:`execute`: timeouts first, lock timeouts retried. ``before`` runs at
        the start of every attempt (planning too), e.g. to drop an INVALID index an interrupted
        ``CREATE INDEX CONCURRENTLY IF NOT EXISTS`` left behind, which that statement would skip.
        """
        self.ensure_timeouts()
        if self.planning:
            if before is not None:
                before()
            self.recorded.append(text)
            return 0

        def attempt() -> int:
            if before is not None:
                before()
            log.info("executing: %s", text)
            return self._send(text)

        self.recorded.append(text)
        return self.with_lock_retry(what, table, attempt, schema=schema)

    def execute_transaction(self, statements: Sequence[str], *, what: str, table: TableRef | None = None,
                            schema: str | None = None) -> None:
        """Send rendered statements as one transaction: all or nothing, retried whole on lock timeout.

        Each statement still runs under lock_timeout, so the transaction never waits long in the
        lock queue holding the locks it already took.
        """
        self.ensure_timeouts()
        self.recorded += ["BEGIN", *statements, "COMMIT"]
        if self.planning:
            return

        def attempt() -> None:
            self.conn.autocommit = False
            try:
                with self.conn.cursor() as cur:
                    for text in statements:
                        log.info("executing: %s", text)
                        cur.execute(text)
                self.conn.commit()
            except BaseException:
                self.conn.rollback()
                raise
            finally:
                self.conn.autocommit = True

        self.with_lock_retry(what, table, attempt, schema=schema)

    # --- indexes ----------------------------------------------------------------------------
    def index_state(self, schema: str, name: str) -> dict | None:
        rows = self.query_dicts("ddl/index_state.sql", params={"schema_name": schema, "index_name": name})
        return rows[0] if rows else None

    def ensure_index(self, spec: IndexSpec) -> str:
        """Make the index exist and be valid. Returns 'exists', 'created' or 'rebuilt' (or 'planned')."""
        table = TableRef(schema_name=spec.schema, table=spec.table)
        outcome = {"value": "created"}

        def attempt() -> str:
            state = self.index_state(spec.schema, spec.name)
            if state is not None and state["indisvalid"]:
                problem = spec.mismatch(state)
                if problem:
                    raise IndexDefinitionMismatch(
                        f"index {spec.schema}.{spec.name} exists and is valid but is not the configured index: "
                        f"{problem}. Existing definition: {state['definition']}. Drop or rename it, or fix "
                        f"schema_changes.indexes in the config."
                    )
                return "exists"
            self.ensure_timeouts()
            if state is not None:  # INVALID: an interrupted CREATE INDEX CONCURRENTLY left it behind
                log.warning("index %s.%s is INVALID (leftover of an interrupted build: %s); dropping it "
                            "concurrently and rebuilding", spec.schema, spec.name, state["definition"])
                drop = self.render("ddl/drop_index_concurrently.sql", {"schema": spec.schema, "index": spec.name})
                self.recorded.append(drop)
                if not self.planning:
                    self._send(drop)
                    self.invalid_indexes_rebuilt += 1
                outcome["value"] = "rebuilt"
            create = self.render(spec.template, spec.identifiers(), spec.params())
            self.recorded.append(create)
            if self.planning:
                return "planned"
            log.info("executing: %s", create)
            with self._progress_monitor(spec.name):
                self._send(create)
            after = self.index_state(spec.schema, spec.name)
            if after is None or not after["indisvalid"]:
                raise DdlError(f"CREATE INDEX CONCURRENTLY {spec.schema}.{spec.name} finished but the index is "
                               f"{'missing' if after is None else 'INVALID'}; re-run the step")
            return outcome["value"]

        return self.with_lock_retry(f"index {spec.schema}.{spec.name}", table, attempt)

    @contextmanager
    def _progress_monitor(self, index_name: str) -> Iterator[None]:
        """Log pg_stat_progress_create_index for our backend from a second connection while building."""
        if self.connect is None:
            yield
            return
        pid = self.query("ddl/backend_pid.sql")[0][0]
        stop = threading.Event()
        try:
            # Connect here, in the caller's thread: resolving an Airflow connection from a worker
            # thread could interleave with the task's own supervisor traffic.
            other = self.connect()
            other.autocommit = True
        except Exception as exc:  # noqa: BLE001 - progress is best-effort, the build is not
            log.info("index progress unavailable: %s", exc)
            yield
            return

        def poll() -> None:
            try:
                while not stop.wait(self.progress_interval):
                    with other.cursor() as cur:
                        sqlfiles.run(cur, "ddl/index_progress.sql", params={"pid": pid})
                        row = cur.fetchone()
                    if row:
                        phase, bd, bt, td, tt, ld, lt, _pd, _pt = row
                        pct = f"{100 * bd / bt:.0f}%" if bt else "-"
                        log.info("building index %s: phase=%s blocks=%s/%s (%s) tuples=%s/%s lockers=%s/%s",
                                 index_name, phase, bd, bt, pct, td, tt, ld, lt)
            except Exception as exc:  # noqa: BLE001
                log.info("index progress polling stopped: %s", exc)

        thread = threading.Thread(target=poll, name=f"index-progress-{index_name}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=10)
            other.close()

    def drop_index(self, schema: str, name: str) -> bool:
        """DROP INDEX CONCURRENTLY IF EXISTS; returns whether there was one."""
        state = self.index_state(schema, name)
        if state is None:
            return False
        table = TableRef(schema_name=schema, table=state["table_name"])
        self.execute("ddl/drop_index_concurrently.sql", {"schema": schema, "index": name}, table=table,
                     what=f"drop index {schema}.{name}")
        return True

    def drop_invalid_indexes(self, schema: str) -> list[str]:
        """Drop (concurrently) every INVALID index in ``schema``: leftovers of interrupted builds.

        Meant to run inside a caller's lock-retry attempt (no retry of its own). Returns the names.
        """
        names = [r[0] for r in self.query("ddl/invalid_indexes.sql", params={"schema_name": schema})]
        for name in names:
            log.warning("index %s.%s is INVALID (leftover of an interrupted build); dropping it concurrently",
                        schema, name)
            drop = self.render("ddl/drop_index_concurrently.sql", {"schema": schema, "index": name})
            self.recorded.append(drop)
            if not self.planning:
                self._send(drop)
                self.invalid_indexes_rebuilt += 1
        return names

    # --- catalog helpers --------------------------------------------------------------------
    def relation_exists(self, table: TableRef) -> bool:
        return bool(self.query("ddl/relation_exists.sql", params={"qualified_name": _qualified(table)})[0][0])

    def column_state(self, table: TableRef, column: str) -> dict | None:
        rows = self.query_dicts("ddl/column_state.sql", params={
            "schema_name": table.schema_name, "table_name": table.table, "column_name": column})
        return rows[0] if rows else None

    def constraint_state(self, table: TableRef, name: str) -> dict | None:
        rows = self.query_dicts("ddl/constraint_state.sql", params={
            "schema_name": table.schema_name, "table_name": table.table, "constraint_name": name})
        return rows[0] if rows else None

    def primary_key(self, table: TableRef) -> str | None:
        rows = self.query("ddl/primary_key.sql", params={"qualified_name": _qualified(table)})
        return rows[0][0] if rows else None

    def null_count(self, table: TableRef, column: str) -> int:
        return self.query("ddl/null_count.sql", _ids(table, column=column))[0][0]

    # --- backfill ---------------------------------------------------------------------------
    def backfill(self, table: TableRef, column: str, key: str, value: Any, *, batch_size: int | None = None,
                 key_range: Sequence[Any] | None = None, pacer: Any = None) -> int:
        """``UPDATE ... SET column = value WHERE column IS NULL`` in key-range batches.

        Each batch is its own short transaction (autocommit), bounded by ``batch_size`` keys, so row
        locks are held for milliseconds and an interrupted backfill resumes where it stopped.
        Batch bounds come from the key's index, so gaps in the key cost nothing.
        ``pacer`` (``migration_engine.pacing.Pacer``, started by the caller): ``pacer.pace(rows,
        keys=...)`` after every batch - health pause, latency budget, rate; not used when planning.
        """
        size = batch_size or self.ddl.update_batch_size
        ids = _ids(table, column=column, key=key)
        after = key_range[0] if key_range else None
        total = batches = 0
        started = time.monotonic()
        while True:
            upto = self.query("ddl/batch_upper_bound.sql", ids, {"after": after, "batch_size": size})[0][0]
            if upto is None:
                break
            n = self.execute("ddl/backfill_batch.sql", ids, {"value": value, "after": after, "upto": upto},
                             table=table, what=f"backfill {table}.{column} keys ({after}, {upto}]")
            total += max(n, 0)
            batches += 1
            if pacer is not None and not self.planning:
                pacer.pace(max(n, 0), keys={"legacy": [upto]})
            if batches % 50 == 0 and not self.planning:
                log.info("backfill %s.%s: %d batches, %d rows updated, at key %s (%.1fs)",
                         table, column, batches, total, upto, time.monotonic() - started)
            after = upto
        if not self.planning:
            log.info("backfill %s.%s: done, %d batches, %d rows updated in %.1fs",
                     table, column, batches, total, time.monotonic() - started)
        return total


def _describe_sessions(rows: list[dict]) -> str:
    return "; ".join(
        f"pid {h['pid']} {h['mode']}{'' if h['granted'] else ' (waiting)'} {h['state']} "
        f"xact {h['xact_age_s']}s: {h['query']}" for h in rows
    )


def _qualified(table: TableRef) -> str:
    """A regclass literal with both parts quoted (to_regclass takes a text name)."""
    return '"{}"."{}"'.format(table.schema_name.replace('"', '""'), table.table.replace('"', '""'))


def _ids(table: TableRef, **extra: str) -> dict[str, str]:
    return {"schema": table.schema_name, "table": table.table, **extra}
