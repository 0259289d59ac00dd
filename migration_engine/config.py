"""The migration config: one YAML file, validated on load, cached by mtime.

Why a typed model: operators edit this file by hand, and a typo must stop the run with a message
that names the key (``cutover.rollout.1.pct: ...``) instead of surfacing as a KeyError mid-phase.
The seed's marketplace migration is the default file (include/migration.yaml); nothing in the engine
names its tables.

Durations are strings (``500ms``, ``2s``, ``4h``, ``90d``). Durations typed ``Window`` (how long to
watch, hold, wait or retain) are multiplied by ``time_scale`` (env ``MIGRATION_TIME_SCALE`` wins) so
rehearsals and tests compress days into minutes; ``Timeout`` durations (lock/statement timeouts,
backoff) are never scaled.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from migration_engine import paths
from migration_engine import transform_settings as ts
from migration_engine.errors import ConfigError
from migration_engine.pacing_settings import Pacing

DEFAULT_CONFIG_PATH = paths.default_config_path()
CONFIG_ENV = "MIGRATION_CONFIG"
TIME_SCALE_ENV = "MIGRATION_TIME_SCALE"


# --- scalar types --------------------------------------------------------------------------
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d|w)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_SQL_TYPE_RE = re.compile(
    r"^(smallint|integer|int|bigint|boolean|text|date|timestamp|timestamptz|"
    r"timestamp with time zone|uuid|jsonb|double precision|real|"
    r"varchar\(\d{1,5}\)|character varying\(\d{1,5}\)|numeric(\(\d{1,3}(,\s*\d{1,3})?\))?)$",
    re.IGNORECASE,
)


def parse_duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '2s', '4h', '90d', got {value!r}")
    if isinstance(value, (int, float)):
        return timedelta(seconds=float(value))
    if isinstance(value, str):
        m = _DURATION_RE.match(value)
        if m:
            return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])
    raise ValueError(f"expected a duration like '500ms', '2s', '4h', '90d', got {value!r}")


def _scale(td: timedelta, info: ValidationInfo) -> timedelta:
    scale = (info.context or {}).get("time_scale", 1.0)
    return td * scale


def _positive(td: timedelta) -> timedelta:
    if td.total_seconds() <= 0:
        raise ValueError("must be a positive duration")
    return td


def _identifier(value: str) -> str:
    if not isinstance(value, str) or not _IDENT_RE.match(value):
        raise ValueError(f"{value!r} is not a plain SQL identifier (letters, digits, _; max 63)")
    return value


def _sql_type(value: str) -> str:
    if not isinstance(value, str) or not _SQL_TYPE_RE.match(value.strip()):
        raise ValueError(f"{value!r} is not a supported column type")
    return value.strip()


Timeout = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_positive)]
Window = Annotated[timedelta, BeforeValidator(parse_duration), AfterValidator(_positive), AfterValidator(_scale)]
Ident = Annotated[str, AfterValidator(_identifier)]
SqlType = Annotated[str, AfterValidator(_sql_type)]
Pct = Annotated[float, Field(ge=0, le=100)]


class TableRef(BaseModel):
    """``schema.table``; written as one string in YAML."""

    model_config = ConfigDict(frozen=True, use_attribute_docstrings=True)
    schema_name: Ident
    """Schema of the table (`public` when the string has no dot)."""
    table: Ident
    """Table name."""

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            parts = value.split(".")
            if len(parts) == 1:
                return {"schema_name": "public", "table": parts[0]}
            if len(parts) == 2:
                return {"schema_name": parts[0], "table": parts[1]}
            raise ValueError(f"expected 'schema.table', got {value!r}")
        return value

    def __str__(self) -> str:
        return f"{self.schema_name}.{self.table}"

    def with_table(self, table: str) -> TableRef:
        return TableRef(schema_name=self.schema_name, table=table)


class Strict(BaseModel):
    # validate_default: defaults go through the same validators, so default windows get scaled too.
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, use_attribute_docstrings=True)


# --- sections ------------------------------------------------------------------------------
class Connections(Strict):
    legacy: Annotated[str, Field(min_length=1)]
    """Airflow connection id of the legacy (application) database; the control schema lives here. Its environment
    variable is `AIRFLOW_CONN_<ID>` (upper-cased)."""
    new: Annotated[str, Field(min_length=1)]
    """Airflow connection id of the new database (ignored when `same_database` is true)."""
    slack: Annotated[str, Field(min_length=1)] = "slack_api_default"
    """Airflow connection id of the Slack Web API (bot token); used for alerts and approval messages."""


class Lookup(Strict):
    """Resolve a value in the new DB: ``SELECT value FROM table WHERE match = <old column>``."""

    table: TableRef
    """Table in the new database that resolves the value (e.g. a providers table keyed by the old tenant id)."""
    match: Ident
    """Column of `table` compared with the old column's value; should be unique (the preflight refuses a non-unique
    one)."""
    value: Ident
    """Column of `table` written into the new column."""


class ColumnMap(Strict):
    """One new column and how its value comes from the old row; the transforms are described in
    ``transform_settings`` (shapes, order, combination rules) and docs/transforms.md."""

    new: Ident
    """Column of the new table this mapping fills."""
    old: Ident | None = Field(None, description=ts.FIELD_DESCRIPTIONS["old"])
    map: dict[str, str] | None = None
    """Value map applied in SQL on the legacy side: old value (as text) -> new value (as text, parsed as the new
    column's type). An in-scope value missing from the map stops the backfill plan; NULL stays NULL."""
    lookup: Lookup | None = None
    """Resolve the old value through a table of the new database instead of copying it (rows without a match get NULL).
    Exclusive with `map`."""
    cast: ts.CastType | None = Field(None, description=ts.FIELD_DESCRIPTIONS["cast"])
    scale: ts.Scale | None = Field(None, description=ts.FIELD_DESCRIPTIONS["scale"])
    default: str | int | float | bool | None = Field(None, description=ts.FIELD_DESCRIPTIONS["default"])
    concat: ts.Concat | None = Field(None, description=ts.FIELD_DESCRIPTIONS["concat"])
    json_object: dict[ts.JsonKey, ts.Ident] | None = Field(None, description=ts.FIELD_DESCRIPTIONS["json_object"])
    expression: ts.ExpressionRef | None = Field(None, description=ts.FIELD_DESCRIPTIONS["expression"])
    inverse: dict[ts.Ident, ts.ExpressionRef] | ts.ExpressionName | None = Field(
        None, description=ts.FIELD_DESCRIPTIONS["inverse"])

    @model_validator(mode="before")
    @classmethod
    def _default_old(cls, value: Any) -> Any:
        return ts.fill_old(value)

    @model_validator(mode="after")
    def _one_transform(self) -> ColumnMap:
        return ts.check(self)


class Scope(Strict):
    """Which old rows belong in the new table (the seed migrates ACTIVE listings)."""

    column: Ident
    """Column of the old table that decides whether a row is migrated (compared as text)."""
    values: Annotated[list[str], Field(min_length=1)]
    """The values of `column` that are in scope; rows with other values are neither copied nor compared (and are
    removed from the new table by a repair)."""


class RollbackDeletes(Strict):
    """Rollback scenario 3: what the old table gets for a row deleted in the new table after the cutover.

    ``delete`` removes the old row; ``mark`` sets ``column = value`` (a text literal, cast by
    Postgres to the column's type), for an old application that never hard-deletes or whose other
    tables reference the row (``marketplace_listing_images``). A marked row counts as deleted.
    """

    action: Literal["delete", "mark"] = "delete"
    """`delete` removes the old row; `mark` sets `column = value` on it instead."""
    column: Ident | None = None
    """For `mark`: the old table's column to set (not the key)."""
    value: str | None = None
    """For `mark`: the text value to set, cast by Postgres to the column's type; must not be one of the scope values."""

    @model_validator(mode="after")
    def _shape(self) -> RollbackDeletes:
        if self.action == "mark" and (self.column is None or self.value is None):
            raise ValueError("rollback_deletes: action 'mark' needs column and value (e.g. status: ARCHIVED)")
        if self.action == "delete" and (self.column is not None or self.value is not None):
            raise ValueError("rollback_deletes: column/value only apply to action 'mark'")
        return self


class Entity(Strict):
    old_table: TableRef
    """The table in the legacy database (`schema.table`)."""
    new_table: TableRef
    """The table in the new database (`schema.table`)."""
    key: Ident
    """Key column of the old table: the backfill pages by it (keyset), the diff splits ranges on it and compares rows
    by it. Must be unique; integer types only today (smallint, integer, bigint)."""
    new_key: Ident = "id"
    """Key column of the new table (its own primary key, usually generated); the rollback sync walks the new table by
    it and links new rows to old keys. Must be unique."""
    legacy_id_column: Ident
    """Column of the new table that holds the old `key` of each row: the join between the two tables. Needs a UNIQUE
    constraint of its own (the backfill's and dual-write's `INSERT ... ON CONFLICT`); filled by the engine, never
    mapped in `columns`."""
    scope: Scope | None = None
    """Which old rows belong in the new table (null: all rows). The diff translates the scope to the new side through
    the scope column's mapping."""
    columns: Annotated[list[ColumnMap], Field(min_length=1)]
    """Column mappings, old -> new, in this order (at least one). Each new column at most once."""
    rollback_deletes: RollbackDeletes = RollbackDeletes()
    """Rollback scenario 3: what the old table gets for a row deleted in the new table after the cutover."""
    hard_deletes: list[Literal["old", "new"]] = Field(["old", "new"], description=(
        "Which applications hard-delete rows of this entity (`DELETE`, not an archiving update): `old` (writing the "
        "old table), `new` (the new table). The consistency re-check reports a row present on one side only without "
        "waiting `recheck_delay` when that row's version column is older than the delay, unless the absent side is "
        "the one written first (old until the write cutover, new after it) and its application hard-deletes: an "
        "in-flight delete cannot be dated. Default both (such differences always wait); `[]`: neither deletes."))

    @field_validator("hard_deletes")
    @classmethod
    def _sides_once(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"lists a side twice: {value} (use [old], [new], [old, new] or [])")
        return value

    @model_validator(mode="after")
    def _unique_columns(self) -> Entity:
        names = [c.new for c in self.columns]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"columns map the new column(s) {dupes} more than once")
        if self.legacy_id_column in names:
            raise ValueError(f"legacy_id_column {self.legacy_id_column!r} is filled by the engine; don't map it")
        mark = self.rollback_deletes
        if mark.action == "mark" and self.scope is not None and mark.column == self.scope.column \
                and mark.value in self.scope.values:
            raise ValueError(f"rollback_deletes marks deleted rows {mark.column} = {mark.value!r}, which is in the "
                             f"scope {self.scope.values}: a marked row would still count as migrated")
        if mark.action == "mark" and mark.column == self.key:
            raise ValueError("rollback_deletes cannot mark the key column")
        return self


class DbSide(Strict):
    db: Literal["legacy", "new"]
    """Which database: `legacy` or `new`."""
    table: TableRef
    """The table (`schema.table`)."""
    column: Ident
    """The column."""


class Reference(Strict):
    """Every non-NULL ``from`` value must exist in ``to`` (possibly another database)."""

    name: Ident
    """Name of the check (results, alerts and Data Docs use it)."""
    from_: DbSide = Field(alias="from")
    """The referencing column; every non-NULL value must exist in `to`."""
    to: DbSide
    """The referenced column (possibly in the other database)."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, populate_by_name=True,
                              use_attribute_docstrings=True)


class ValueCheck(Strict):
    name: Ident
    """Name of the check (a Great Expectations suite of phases 4 and the hourly run)."""
    db: Literal["legacy", "new"]
    """Which database the table is in: `legacy` or `new`."""
    table: TableRef
    """The table (`schema.table`)."""
    column: Ident
    """The column whose values are checked."""
    allowed: list[str] | None = None
    """The values the column may hold (null: any)."""
    not_null: bool = False
    """Also require the column to be non-NULL."""
    severity: Literal["warning", "critical"] = "critical"
    """`critical` fails the run and pages; `warning` reports only."""


class AddColumn(Strict):
    table: TableRef
    """Legacy table that gets the column (phase 1 runs on the legacy database)."""
    column: Ident
    """The new column's name."""
    type: SqlType
    """Its type: smallint, integer, bigint, boolean, text, date, timestamp, timestamptz, uuid, jsonb, double precision,
    real, varchar(n), numeric[(p[,s])]. An existing column of another type is refused."""
    default: str | int | float | bool | None = None
    """Default for new rows (added without rewriting the table); null: no default."""


class IndexWhere(Strict):
    column: Ident
    """Column of the partial-index (or count) condition."""
    is_not_null: bool = False
    """Condition `column IS NOT NULL`."""
    equals: str | int | bool | None = None
    """Condition `column = value`. Give exactly one of `is_not_null` / `equals`."""

    @model_validator(mode="after")
    def _one(self) -> IndexWhere:
        if self.is_not_null == (self.equals is not None):
            raise ValueError("give exactly one of 'is_not_null: true' or 'equals: <value>'")
        return self


class CreateIndex(Strict):
    name: Ident
    """Index name (built `CONCURRENTLY`)."""
    table: TableRef
    """Legacy table to index."""
    columns: Annotated[list[Ident], Field(min_length=1)]
    """Indexed columns, in order (may include columns phase 1 adds)."""
    where: IndexWhere | None = None
    """Partial-index condition (null: the whole table)."""
    unique: bool = False
    """Create a UNIQUE index."""


class SetRequired(Strict):
    """Backfill NULLs with ``value`` in batches, set the default, and (optionally) NOT NULL."""

    table: TableRef
    """Legacy table whose column is filled."""
    column: Ident
    """Column whose NULLs are set to `value` in batches (then its default, then optionally NOT NULL)."""
    value: str | int | float | bool
    """The value for existing NULLs and the column's default."""
    not_null: bool = True
    """Finish with NOT NULL (via a `CHECK ... NOT VALID` + `VALIDATE`, so no long lock)."""
    key: Ident | None = None  # batch key for the backfill; default: the table's one-column primary key
    """Batch key of the update (a unique integer column); default: the table's one-column primary key. The preflight
    refuses a table with neither."""
    keep_not_null_check: bool = False  # keep the CHECK (col IS NOT NULL) helper after SET NOT NULL
    """Keep the `CHECK (column IS NOT NULL)` helper constraint after `SET NOT NULL` (default: dropped)."""


class AddCheck(Strict):
    name: Ident
    """Constraint name."""
    table: TableRef
    """Legacy table."""
    column: Ident
    """Column the check constrains."""
    allowed: Annotated[list[str], Field(min_length=1)]
    """The allowed values (`CHECK (column IN (...))`, added `NOT VALID` then validated)."""


class SchemaChanges(Strict):
    add_columns: list[AddColumn] = []
    """Step 1.1: columns added to legacy tables."""
    indexes: list[CreateIndex] = []
    """Step 1.2: indexes built concurrently."""
    required: list[SetRequired] = []
    """Step 1.3: columns backfilled in batches, given a default and (optionally) NOT NULL."""
    checks: list[AddCheck] = []
    """Step 1.3: allowed-values CHECK constraints."""


class Ddl(Strict):
    lock_timeout: Timeout = timedelta(seconds=2)
    """`lock_timeout` of every DDL statement: a statement that waits longer for its lock gives up (and is retried)
    instead of queueing the application behind it. Never scaled."""
    statement_timeout: Timeout = timedelta(minutes=30)
    """`statement_timeout` of every DDL statement (index builds included). Never scaled."""
    max_lock_retries: Annotated[int, Field(ge=0, le=1000)] = 10
    """Retries of a statement that hit the lock timeout (SQLSTATE 55P03), with jittered exponential backoff."""
    retry_backoff_base: Timeout = timedelta(milliseconds=500)
    """First backoff before a lock-timeout retry; doubles per retry."""
    retry_backoff_max: Timeout = timedelta(seconds=30)
    """Longest backoff between lock-timeout retries."""
    update_batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = 1000
    """Rows per batch of phase 1's `required` backfill."""


class PauseWhen(Strict):
    max_active_connections: Annotated[int, Field(ge=1)] = 150
    """Pause the backfill while the legacy database has more active connections than this."""
    max_lock_waits: Annotated[int, Field(ge=0)] = 10
    """Pause while more sessions than this wait for a lock."""
    max_replication_lag: Timeout = timedelta(seconds=30)
    """Pause while a replica lags more than this."""
    max_app_p95_latency_ms: Annotated[float, Field(gt=0)] = 500
    """Pause while the application's p95 latency (its stats over `backfill.app_latency_window`) is above this."""


_QUALIFIED_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}\.[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _qualified(value: str) -> str:
    if not isinstance(value, str) or not _QUALIFIED_RE.match(value):
        raise ValueError(f"{value!r} is not schema.function (two plain SQL identifiers)")
    return value


# The backfill's latency budget and health signals (issue 16). Declared here, not in a module of the
# backfill: the config model cannot import the backfill package (import cycle); ``backfill/controller.py``
# and ``backfill/throttle.py`` read every key.
class LatencyBudget(Strict):
    enabled: bool = Field(False, description=(
        "Adapt the copy's rate to the budget (AIMD-style controller); false = only the fixed "
        "max_rows_per_second cap and the pause_when thresholds. Off by default until the controller "
        "bench has been reproduced (bench/README.md); the phase-2 Param latency_budget_pct turns it on."))
    max_latency_increase_pct: float = Field(20, gt=0, le=1000, description=(
        "Budget: the probe's latency (and the application's p95 from the stats contract, where present) "
        "may rise at most this many percent over its baseline measured before the copy starts."))
    max_replication_lag: Timeout = Field(timedelta(seconds=30), description=(
        "Budget: replication lag of either database's replicas; the rate shrinks as the lag nears it "
        "(the copy pauses outright above pause_when.max_replication_lag)."))
    probe_interval: Timeout = Field(timedelta(seconds=1), description=(
        "How often the probe times a primary-key lookup on the source and target tables (its own "
        "connections, not the copy's)."))
    baseline_duration: Timeout = Field(timedelta(seconds=5), description=(
        "How long the probe samples both databases before the first batch to set the baseline."))
    signal_samples: int = Field(5, ge=1, le=120, description=(
        "The latency signal is the 90th percentile of the lookups (and commits) of this many latest probe "
        "samples per database."))
    start_rows_per_second: int = Field(5000, ge=1, description="Rate of the whole backfill before the first decision.")
    min_rows_per_second: int = Field(200, ge=1, description=(
        "The controller never goes below this rate (whole backfill)."))
    increase_pct: float = Field(15, gt=0, le=100, description=(
        "While every signal uses less than 80 % of its budget: after slow start (the rate doubles per "
        "decision until a signal first reaches 80 %), the rate grows by this percent of the rate where slow "
        "start ended, per decision (additive increase)."))
    decrease_factor: float = Field(0.6, gt=0, lt=1, description="Over budget: the rate is multiplied by this.")
    commit_probe: bool = Field(True, description=(
        "Also time a tiny transactional write on the new (written) database every probe round - "
        "pg_logical_emit_message(true, ...): no table, it takes a transaction id and its commit waits for the "
        "WAL flush, as the application's writes do, which is what a copy slows down. A role that may not call "
        "it is logged once and only the lookup probe runs. The backfill's probe only (phase 1's and the "
        "repair's pacer time lookups)."))
    cut_in_proportion: bool = Field(True, description=(
        "Over budget, cut in proportion to the overshoot: rate x 0.8 / pressure (aiming at 80 % of the budget if "
        "latency grows with the rate), at most decrease_factor, at least x 0.25 per cut; false = always "
        "x decrease_factor."))
    cut_interval: int | None = Field(2, ge=1, le=120, description=(
        "Decisions between two cuts (the next cut waits for the signal to show the first one's effect); "
        "null = signal_samples."))
    halt_pressure: float | None = Field(2.0, gt=1, description=(
        "A signal at this share of its allowance or more (2 = twice as far over its baseline as the budget "
        "allows) cuts straight to min_rows_per_second: that is a load peak on the database, not the copy's "
        "own edge, and every second at the old rate costs the peak's requests; fast_recovery brings the "
        "rate back once the signal is under 50 % again. null = proportional cuts only."))
    fast_recovery: bool = Field(True, description=(
        "After a cut, once every signal uses less than 50 % of its budget again (the load peak is over), go "
        "straight back to the rate before the run of cuts (before the peak, not the last step down), then grow "
        "additively; false = additive growth only."))
    reset_after_cut: bool = Field(True, description=(
        "After a cut, forget the probe's window, so the next signal is measured at the new rate only (and a "
        "further cut, after cut_interval decisions, answers the new rate, not lookups from before the cut)."))
    app_p95_ms: float | None = Field(None, gt=0, description=(
        "The application's p95 (ms) as the operator knows it (APM, load-balancer logs) for probe_allowance "
        "app_p95; null = the stats contract's p95 measured before the copy. The stats contract's p95 is the "
        "event-weighted p95 of its per-minute, per-path rows - near the slowest path's p95, which can be several "
        "times the p95 over all requests (the bench: 15.8 ms vs 4.1 ms), and then allows the probes too much."))
    probe_allowance: Literal["relative", "app_p95"] = Field("relative", description=(
        "How far a probe may rise: relative = max_latency_increase_pct over the probe's own baseline (strict: "
        "+20 % of a 0.7 ms lookup is 0.14 ms); app_p95 = by max_latency_increase_pct of the application's p95 "
        "in ms - app_p95_ms if stated, else the stats contract's baseline (+20 % of a 4 ms p95 allows each probe "
        "0.8 ms more, the extra latency the budget allows a request; relative when neither is known). The "
        "application's p95 signal itself is always relative to its baseline. Measured: bench/README.md."))


class HealthSignals(Strict):
    pause_on_autovacuum: bool = Field(True, description=(
        "Pause while autovacuum works on a table the copy writes or reads (pg_stat_progress_vacuum), "
        "as GitLab's batched migrations do."))
    max_wal_bytes_per_second: int = Field(0, ge=0, description=(
        "Pause while the written (new) database generates more WAL than this (bytes/s between two "
        "checks); 0 = off."))
    legacy_replication_lag_function: Annotated[str, AfterValidator(_qualified)] | None = Field(None, description=(
        "schema.function on the legacy database returning (replicas bigint, lag_seconds float8) instead of "
        "pg_stat_replication (managed services, a heartbeat table); null = pg_stat_replication."))
    new_replication_lag_function: Annotated[str, AfterValidator(_qualified)] | None = Field(None, description=(
        "The same for the new (written) database."))


class Throttle(Strict):
    budget: LatencyBudget = Field(LatencyBudget(), description="The latency-budget controller.")
    signals: HealthSignals = Field(HealthSignals(), description="Health signals beyond pause_when.")


class Backfill(Strict):
    batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = 5000
    """Rows of the first page; adapted between `min_batch_size` and `max_batch_size` towards `target_batch_duration`."""
    min_batch_size: Annotated[int, Field(ge=1)] = 500
    """Smallest page the adaptive sizing goes down to."""
    max_batch_size: Annotated[int, Field(ge=1)] = 50_000
    """Largest page the adaptive sizing goes up to."""
    target_batch_duration: Timeout = timedelta(seconds=1)
    """How long one page should take; the batch size adapts towards it."""
    max_rows_per_second: Annotated[int, Field(ge=0)] = 0  # 0 = unlimited
    """Throughput cap over all workers (0: unlimited)."""
    pace_slice: Timeout = Field(timedelta(milliseconds=250), description=(
        "Under a rate (max_rows_per_second, or the latency-budget controller's), a batch holds at most this "
        "long's worth of rows at the worker's share of it (never fewer than min_batch_size), so the copy adds an "
        "even load - several small batches a second - instead of target_batch_duration at full speed followed "
        "by a long sleep, whose bursts the application's tail latency sees (bench/README.md)."))
    parallelism: Annotated[int, Field(ge=1, le=64)] = 2
    """Key ranges copied in parallel (mapped tasks / CLI workers)."""
    pause_when: PauseWhen = {}
    """Database health limits: the backfill pauses while one is exceeded."""
    pause_check_interval: Timeout = timedelta(seconds=5)
    """How often health is checked while running and while paused."""
    # Conflict rule against dual-written rows: the row with the newer version column wins
    # (a new-table column filled from an old column that every change bumps); None = never
    # overwrite an existing row (ON CONFLICT DO NOTHING).
    version_column: Ident | None = "updated_at"
    """Conflict rule against dual-written rows: a mapped new column that every change bumps (e.g. `updated_at`); the
    row with the newer version wins. null: never overwrite an existing row (`ON CONFLICT DO NOTHING`)."""
    lock_timeout: Timeout = timedelta(seconds=2)       # per batch statement on either database
    """`lock_timeout` of each batch statement on either database."""
    statement_timeout: Timeout = timedelta(minutes=5)
    """`statement_timeout` of each batch statement."""
    max_batch_retries: Annotated[int, Field(ge=0, le=100)] = 5  # lock timeouts, deadlocks, serialization
    """Retries of a batch after a lock timeout, deadlock or serialization failure."""
    recheck_deleted: bool = True          # delete copied rows whose old row vanished meanwhile
    """After copying, delete copied rows whose old row vanished meanwhile."""
    progress_interval: Timeout = timedelta(seconds=10)  # progress line in the task log
    """How often a progress line is written to the task log."""
    ledger_progress_interval: Timeout = timedelta(minutes=1)  # backfill_progress ledger entries
    """How often a `backfill_progress` entry is appended to the audit ledger."""
    direct_copy: bool = Field(True, description=(
        "COPY a batch whose key range holds no new rows yet straight into the new table (no stage, no "
        "INSERT ... SELECT); false: every batch goes through the stage (docs/phase2.md)."))
    direct_copy_max_lookup_entries: int = Field(10_000, ge=0, description=(
        "The direct COPY resolves each looked-up column from a map of its lookup table read when the range "
        "starts; a lookup table with more rows than this (0: any) keeps the range on the staged path."))
    app_latency_window: Window = timedelta(minutes=5)  # p95 of the app's stats over this window
    """Window of the application's stats the p95 latency pause reads (scaled by `time_scale`)."""
    throttle: Throttle = Field(Throttle(), description=(
        "Latency budget (controller) and health signals on both databases; see docs/phase2.md."))

    @model_validator(mode="after")
    def _sizes(self) -> Backfill:
        if self.min_batch_size > self.max_batch_size:
            raise ValueError(f"min_batch_size {self.min_batch_size} > max_batch_size {self.max_batch_size}")
        if not self.min_batch_size <= self.batch_size <= self.max_batch_size:
            raise ValueError(f"need min_batch_size <= batch_size <= max_batch_size, got {self.min_batch_size} <= "
                             f"{self.batch_size} <= {self.max_batch_size}")
        return self

    def initial_batch_size(self) -> int:
        """The first page's size: ``batch_size`` kept inside [min, max] (the adaptive bounds)."""
        return max(self.min_batch_size, min(self.max_batch_size, self.batch_size))


class Backup(Strict):
    dir: str = "/var/backups/zero-downtime-migration"
    """Directory for the pre-flight `pg_dump` backups (and their manifests)."""
    disk_space_factor: Annotated[float, Field(ge=1)] = 2.0
    """Free space required in `dir`, as a multiple of the database size."""
    verify_restore: bool = True
    """Restore each backup into a scratch database to prove it restores."""


class DualWrite(Strict):
    window: Window = timedelta(hours=1)
    """Window the dual-write health gate measures (scaled by `time_scale`)."""
    warn_below_pct: Pct = 95
    """Success rate (%) below which the gate warns."""
    critical_below_pct: Pct = 90
    """Success rate (%) below which the gate is critical (fails the task); <= `warn_below_pct`."""
    latency_p95_warn_ms: Annotated[float, Field(gt=0)] = 500
    """Dual-write p95 latency (ms) above which the gate warns."""
    min_attempts: Annotated[int, Field(ge=1)] = 100
    """Fewest dual-write attempts in the window for a verdict (fewer: no data, keep waiting)."""
    max_gap: Window = timedelta(minutes=10)
    """Longest gap without stats before the gate reports the application silent."""
    poke_interval: Window = timedelta(minutes=1)
    """How often the waiting gate evaluates."""
    gate_timeout: Window = timedelta(days=7)  # a gate that has not passed by then fails the task
    """A gate that has not passed by then fails the task."""

    @model_validator(mode="after")
    def _order(self) -> DualWrite:
        if self.critical_below_pct > self.warn_below_pct:
            raise ValueError("critical_below_pct must not be above warn_below_pct")
        return self


class RolloutStep(Strict):
    pct: Annotated[int, Field(ge=1, le=100)]
    """Share of reads served from the new path (1-100)."""
    hold: Window
    """How long the step is held and watched before the next one (scaled by `time_scale`)."""


class Cutover(Strict):
    dual_write_min_success_pct: Pct = 99
    """Checklist: dual-write success (%) over `dual_write_window` at least this."""
    dual_write_window: Window = timedelta(hours=48)
    """Checklist: window of the dual-write success check."""
    shadow_mismatch_max_pct: Pct = 0.1
    """Checklist: shadow-read mismatches (%) over `shadow_window` at most this."""
    shadow_window: Window = timedelta(hours=24)
    """Checklist: window of the shadow-read check."""
    shadow_min_reads: Annotated[int, Field(ge=1)] = 1000
    """Checklist: fewest shadow reads in the window for a verdict."""
    consistency_max_age: Window = timedelta(hours=2)
    """Checklist: the last passed consistency run must be younger than this."""
    backup_max_age: Window = timedelta(hours=24)
    """Checklist: the last verified backup must be younger than this."""
    error_rate_max_increase_points: Pct = 0.5
    """Read rollout: a step rolls back when the new path's error rate exceeds the baseline by more than this many
    percentage points."""
    check_interval: Window = timedelta(minutes=5)
    """Read rollout: how often a held step is checked."""
    min_requests_per_check: Annotated[int, Field(ge=1)] = 50
    """Read rollout: fewest new-path requests in an interval for a verdict."""
    rollout: Annotated[list[RolloutStep], Field(min_length=1)] = [
        {"pct": 10, "hold": "4h"}, {"pct": 25, "hold": "4h"}, {"pct": 50, "hold": "8h"}, {"pct": 100, "hold": "24h"},
    ]
    """Read rollout steps; percentages strictly increase and end at 100."""
    keep_old_sync: Window | None = timedelta(days=7)
    """How long writes keep being synced to the old table after the write cutover (null: not kept)."""
    approval_timeout: Window = timedelta(hours=4)
    """How long the cutover approvals wait for an answer."""
    # How long the pre-cutover checklist gates wait for their conditions before the run fails.
    checklist_timeout: Window = timedelta(hours=1)
    """How long the pre-cutover checklist gates wait for their conditions before the run fails."""
    # Read rollout: the old-path read error rate over this window before the first step is the
    # baseline when a check interval has too little old-path traffic (at 100 % there is none).
    baseline_window: Window = timedelta(hours=1)
    """The old-path read error rate over this window before the first step is the baseline when an interval has too
    little old-path traffic."""
    # Consecutive check intervals without enough new-path requests before a step is aborted and
    # rolled back (no data is not success; Argo Rollouts' consecutiveErrorLimit).
    max_inconclusive_checks: Annotated[int, Field(ge=1, le=1000)] = 3
    """Consecutive intervals without enough new-path requests before a step is aborted and rolled back (no data is not
    success)."""
    # How long the application takes to see a flag change (its flag cache TTL plus margin).
    flag_propagation: Timeout = timedelta(seconds=10)
    """How long the application takes to see a flag change (its flag cache TTL plus margin). Never scaled."""
    # Rollbacks / cleanup: how long to wait for writes to stop after maintenance mode or flags off.
    quiesce_timeout: Timeout = timedelta(minutes=5)
    """Rollbacks / cleanup: how long to wait for writes to stop after maintenance mode or flags off."""
    # Rollback scenarios 1 and 2: the error rate must be back at baseline within this window.
    rollback_verify_window: Window = timedelta(minutes=15)
    """Rollback scenarios 1 and 2: the error rate must be back at baseline within this window."""
    # Rollback scenario 3: database the pre-cutover backup is restored into (default
    # <legacy db>_pre_cutover); it must not exist or be one an earlier run of the rollback created.
    rollback_side_database: Ident | None = None
    """Rollback scenario 3: database the pre-cutover backup is restored into (default `<legacy db>_pre_cutover`); it
    must not exist or be one an earlier run of the rollback created."""
    # Rollback scenario 3: at most this many old rows per entity are deleted (or marked) because
    # their new row was deleted after the cutover; more refuses (pre-flight and sync) - an empty
    # or wrong new table must not empty the old one. Raise it after reading the pre-flight count.
    rollback_max_deletes: Annotated[int, Field(ge=0)] = 1000
    """Rollback scenario 3: at most this many old rows per entity are deleted (or marked) because their new row was
    deleted after the cutover; more refuses."""
    performance_max_p95_increase_pct: Annotated[float, Field(ge=0, le=1000)] = Field(20, description=(
        "Pre-cutover gate check_performance (seed: performance benchmarks meet targets) and the read "
        "rollout's latency rollback (seed scenario 2): new-path read p95 may exceed the old path's by at most "
        "this many percent."))
    performance_min_increase_ms: Annotated[float, Field(ge=0)] = Field(10, description=(
        "Latency noise floor: a new-path p95 above the allowed percentage but less than this many ms above the "
        "old path's is not a degradation (sub-millisecond reads differ by large percentages)."))
    performance_window: Window = Field(timedelta(hours=1), description=(
        "Window of the pre-cutover performance gate (shadow_read.new vs shadow_read.old p95)."))
    performance_min_samples: Annotated[int, Field(ge=1)] = Field(100, description=(
        "Reads of each path the performance gate needs in its window (fewer: waiting, never passed)."))
    performance_new_operation: str = Field("shadow_read.new", description=(
        "Stats-contract operation timing new-path reads before the cutover (operation_stats)."))
    performance_old_operation: str = Field("shadow_read.old", description=(
        "Stats-contract operation timing old-path reads of the same keys (operation_stats)."))

    @model_validator(mode="after")
    def _rollout_order(self) -> Cutover:
        pcts = [s.pct for s in self.rollout]
        if pcts != sorted(set(pcts)) or pcts[-1] != 100:
            raise ValueError(f"rollout percentages must strictly increase and end at 100, got {pcts}")
        return self


class DropColumn(Strict):
    table: TableRef
    """Legacy table."""
    column: Ident
    """Column dropped in phase 6 (after its approval)."""


class Cleanup(Strict):
    min_age_after_write_cutover: Window = timedelta(days=7)
    """Phase 6 refuses to archive before the write cutover is this old."""
    archive_retention: Window = timedelta(days=90)
    """Archived tables are kept this long before they may be dropped."""
    archive_suffix: Ident = "_archived"
    """Suffix of an archived table's name (`orders` -> `orders_archived`)."""
    archive_tables: list[TableRef] = []
    """Legacy tables renamed to their archive name in phase 6 (then dropped after `archive_retention`)."""
    drop_columns: list[DropColumn] = []
    """Legacy columns dropped in phase 6."""
    # Before renaming, the old tables must show no writes (pg_stat_user_tables) for this long.
    quiet_period: Timeout = timedelta(seconds=15)
    """Before renaming, the old tables must show no writes (pg_stat_user_tables) for this long. Never scaled."""
    consistency_passing_for: Window = Field(timedelta(days=7), description=(
        "Drop readiness (seed post-migration checklist: all consistency checks passing for 7 days): every "
        "finished full consistency run of this long before the drop passed, the first of them at least this "
        "long ago."))
    consistency_max_gap: Window = Field(timedelta(hours=2), description=(
        "Drop readiness: the longest stretch without a finished consistency run allowed in that period (the "
        "hourly DAG must have kept running), the time since the latest run included."))


class CountSide(Strict):
    """Rows counted on one side of a count-parity check (optionally filtered by one column)."""

    table: TableRef
    """Table counted."""
    where: IndexWhere | None = None
    """Optional condition on one column (null: every row)."""


class CountParity(Strict):
    """``count(legacy side) == count(new side)``, e.g. the seed's validateTransactionCounts()."""

    name: Ident
    """Name of the check."""
    legacy: CountSide
    """What is counted in the legacy database."""
    new: CountSide
    """What is counted in the new database; the two counts must be equal."""


class Consistency(Strict):
    chunk_size: Annotated[int, Field(ge=10)] = 10_000
    """Rows per key-range chunk (one checksum query per side)."""
    bisect_min_rows: Annotated[int, Field(ge=1)] = 200
    """Differing ranges are split until this small, then rows are compared."""
    bisect_factor: Annotated[int, Field(ge=2, le=256)] = 16  # sub-ranges per differing range
    """Sub-ranges per split of a differing range."""
    parallelism: Annotated[int, Field(ge=1, le=64)] = 2
    """Worker threads (each with one connection per database)."""
    max_reported_keys: Annotated[int, Field(ge=1)] = 20
    """Keys named in a Slack alert per check and kind of difference."""
    max_stored_keys: Annotated[int, Field(ge=1, le=1_000_000)] = 1000  # per check and kind
    """Keys stored per check and kind (counts are always exact)."""
    # a repair (migration_phase3_repair) that would delete more new rows waits for the
    # repair_deletes approval
    repair_max_deletes: Annotated[int, Field(ge=0)] = 100
    """A repair (migration_phase3_repair) deleting more new rows than this waits for the `repair_deletes` approval."""
    recheck_delay: Window = timedelta(seconds=2)  # re-read differing rows once (in-flight writes)
    """Differing rows are read again after this (in-flight dual-writes)."""
    statement_timeout: Timeout = timedelta(minutes=10)
    """`statement_timeout` of the consistency queries."""
    retention: Window = timedelta(days=30)  # run history and findings kept this long
    """Run history and findings are kept this long."""
    count_parity: list[CountParity] = []
    """Row-count equalities between the databases (e.g. transactions with an invoice)."""
    schedule: str = "@hourly"
    """Schedule of `migration_consistency_hourly` (cron or preset)."""
    data_docs_dir: str | None = None  # default: <project>/gx
    """Great Expectations project directory (Data Docs); default `<project>/gx`."""

    @model_validator(mode="after")
    def _unique_names(self) -> Consistency:
        names = [c.name for c in self.count_parity]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"count_parity names must be unique, repeated: {dupes}")
        return self


class Slack(Strict):
    warning_channel: Annotated[str, Field(min_length=1)] = "#migration"
    """Channel for warnings (and approval requests unless `approvals.channel` is set)."""
    critical_channel: Annotated[str, Field(min_length=1)] = "#migration-critical"
    """Channel for critical alerts, with `oncall_mention`."""
    oncall_mention: str = "<!subteam^ONCALL>"
    """Mention added to critical alerts (e.g. `<!subteam^S012ABC>` for a user group)."""
    airflow_base_url: str = "http://localhost:8080"
    """Base URL of the Airflow UI, for the links in messages."""


_SLACK_USER_RE = re.compile(r"^[UW][A-Z0-9]{2,}$")
APPROVERS_DOC = "docs/oncall-slack.md section 3"


class Approver(Strict):
    """One person who may answer an approval point: the same human in Slack and in Airflow.

    ``slack`` is their Slack member id (a click is matched on it); ``airflow`` is their Airflow user
    id as the auth manager reports it (simple auth manager: the username; FAB: the numeric user id),
    which becomes the HITL ``assigned_users`` entry the Airflow UI and REST API enforce.
    """

    slack: str
    """Their Slack member id (`U...`/`W...`; profile -> Copy member ID); a click is matched on it."""
    airflow: Annotated[str, Field(min_length=1)]
    """Their Airflow user id as the auth manager reports it (simple auth manager: the username; FAB: the numeric id);
    becomes the HITL `assigned_users` entry."""
    name: str | None = None  # shown in Airflow's Required Actions; default: the Airflow user id
    """Shown in Airflow's Required Actions (default: the Airflow user id)."""

    @field_validator("slack")
    @classmethod
    def _slack_id(cls, value: str) -> str:
        # A display name or e-mail here would never match a click and silently lock everyone out.
        if not _SLACK_USER_RE.match(value):
            raise ValueError(f"approvers must be Slack user ids like U012ABCDEF (profile -> Copy member ID), "
                             f"got {value!r}")
        return value

    @field_validator("airflow")
    @classmethod
    def _airflow_user(cls, value: str) -> str:
        if value != value.strip() or not value:
            raise ValueError(f"airflow user {value!r} has leading/trailing spaces")
        return value

    @property
    def label(self) -> str:
        return self.name or self.airflow


class Approvals(Strict):
    # approval point (or "default") -> the people who may answer it, each {slack, airflow[, name]}
    approvers: dict[str, list[Approver]] = {"default": []}
    """Approval point (or `default` for the rest) -> the people who may answer it, each `{slack, airflow[, name]}`."""
    response_timeout: Window = timedelta(hours=4)
    """How long an approval waits; then it takes its safe default (Reject) and pages on-call."""
    channel: str | None = None  # Slack channel for approval requests; default slack.warning_channel
    """Slack channel for approval requests (default: `slack.warning_channel`)."""

    @field_validator("approvers", mode="before")
    @classmethod
    def _old_form(cls, value: Any) -> Any:
        """The form before issue 14 listed Slack ids only; it cannot be converted silently (who is the
        Airflow user?), so it is refused with the exact replacement to write."""
        if not isinstance(value, dict):
            return value
        old = [(point, i, person) for point, people in value.items() if isinstance(people, list)
               for i, person in enumerate(people) if isinstance(person, str)]
        if old:
            point, i, person = old[0]
            raise ValueError(
                f"approvals.approvers.{point}[{i}] is {person!r}: the old form (a Slack id only) is no longer "
                f"accepted, because each approver must be the same person in Slack and in Airflow. Write "
                f"'- {{slack: {person}, airflow: <their Airflow user id>}}' instead ({len(old)} entr"
                f"{'y' if len(old) == 1 else 'ies'} to change; {APPROVERS_DOC})")
        return value

    @model_validator(mode="after")
    def _one_person_each(self) -> Approvals:
        for point, people in self.approvers.items():
            for attr in ("slack", "airflow"):
                ids = [getattr(p, attr) for p in people]
                dupes = sorted({i for i in ids if ids.count(i) > 1})
                if dupes:
                    raise ValueError(f"approvals.approvers.{point}: {attr} id(s) {dupes} listed twice; each "
                                     "person once, with one Slack id and one Airflow user")
        return self


HOURLY_DAG_ID = "migration_consistency_hourly"
_DAG_ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,250}$")


class Deadlines(Strict):
    """When time runs out silently, page (docs/runbook.md "Deadlines"; read by the DAG header).

    Each duration is measured from the moment a DAG run was queued (Airflow Deadline Alerts, fired
    by the scheduler, paged by the triggerer). ``null`` switches one off.
    """

    # A run of the hourly consistency DAG not finished this long after it was queued pages: with
    # max_active_runs=1 later runs queue behind it. Shorter than the schedule, so it pages before
    # the next run is due.
    consistency_hourly: Window | None = timedelta(minutes=45)
    """A `migration_consistency_hourly` run not finished this long after it was queued pages (later runs queue behind
    it). null: off."""
    # Any other migration DAG run not finished this long after it was queued pages; keys are DAG
    # ids, ``default`` covers the rest.
    phase_runs: dict[str, Window | None] = {"default": timedelta(hours=12)}
    """DAG id (or `default`) -> how long any other migration DAG run may take from being queued before it pages; null:
    no deadline. `default` is required."""
    # An approval nobody answered gets a reminder at these percentages of its response timeout;
    # the last one pages on-call (critical), earlier ones are warnings. [] switches reminders off.
    approval_reminders: list[Annotated[float, Field(gt=0, lt=100)]] = [50, 80]
    """Percentages of the response timeout at which an unanswered approval gets a reminder; the last one pages on-call.
    []: off."""
    # How often a run's approval watcher looks for unanswered approvals (not scaled).
    reminder_poll: Timeout = timedelta(minutes=1)
    """How often a run's approval watcher looks for unanswered approvals. Never scaled."""

    @model_validator(mode="after")
    def _check(self) -> Deadlines:
        if "default" not in self.phase_runs:
            raise ValueError("phase_runs needs a 'default' entry (a duration, or null for no deadline)")
        bad = sorted(k for k in self.phase_runs if not _DAG_ID_RE.match(k))
        if bad:
            raise ValueError(f"phase_runs keys must be DAG ids or 'default', got {bad}")
        if HOURLY_DAG_ID in self.phase_runs:
            raise ValueError(f"{HOURLY_DAG_ID} is set by deadlines.consistency_hourly, not phase_runs")
        if self.approval_reminders != sorted(set(self.approval_reminders)):
            raise ValueError(f"approval_reminders must be strictly increasing percentages, got "
                             f"{self.approval_reminders}")
        return self

    def run_deadline(self, dag_id: str) -> timedelta | None:
        """How long a run of ``dag_id`` may take from being queued before it pages (None: never)."""
        if dag_id == HOURLY_DAG_ID:
            return self.consistency_hourly
        return self.phase_runs.get(dag_id, self.phase_runs["default"])


_OPERATION_RE = re.compile(r"^[a-z][a-z0-9_.]{0,62}$")
# The three keys the seed's alert table had before ``alerts.metrics``: kept as aliases that set the
# threshold of the row of that name (docs/oncall-slack.md, "Metric alerts").
LEGACY_ALERT_KEYS = {
    "cross_db_latency_p95_warn_ms": ("cross_db_latency_p95", "cross_db_query", "p95_ms", "warning"),
    "invoice_state_error_critical_pct": ("invoice_state_transition_errors", "invoice_state_transition",
                                         "error_pct", "critical"),
    "payment_error_critical_pct": ("payment_processing_errors", "payment_processing", "error_pct", "critical"),
}


class MetricAlert(Strict):
    """One row of the seed's alert table: a named operation's error rate or p95 against a threshold."""

    name: Ident = Field(description="Stable name of the alert (its Slack dedup key and gate_results gate "
                                    "``metric_alert:<name>``).")
    operation: str = Field(pattern=_OPERATION_RE.pattern, description=(
        "Operation name the application reports through the stats contract "
        "(``ControlClient.record_operation``), e.g. ``payment_processing``."))
    metric: Literal["error_pct", "p95_ms"] = Field(description=(
        "``error_pct``: errors / requests in % over the window; ``p95_ms``: event-weighted p95 latency (ms) of "
        "the per-minute p95s over the window."))
    threshold: Annotated[float, Field(gt=0)] = Field(description=(
        "The alert fires when the metric is strictly above this (percent for error_pct, ms for p95_ms)."))
    severity: Literal["warning", "critical"] = Field(description=(
        "Slack routing: critical pages on-call in the critical channel, warning goes to the warning channel."))
    window: Window = Field(timedelta(minutes=15), description="Rolling window the metric is measured over.")
    min_samples: Annotated[int, Field(ge=1)] = Field(100, description=(
        "Fewer requests than this in the window: not judged (an open alert stays open, nothing new fires)."))
    next_step: str = Field("", description="What on-call should do first; shown in the page.")

    @model_validator(mode="after")
    def _pct_bound(self) -> MetricAlert:
        if self.metric == "error_pct" and self.threshold >= 100:
            raise ValueError(f"alert {self.name}: an error_pct threshold must be below 100, got {self.threshold:g}")
        return self


class Alerts(Strict):
    """Metric alerts (seed "Monitoring and Alerts" rows not covered by a phase's gates)."""

    evaluate_every: Window = Field(timedelta(minutes=5), description=(
        "Schedule of the migration_metric_alerts DAG that evaluates ``metrics`` (read at DAG parse time)."))
    metrics: list[MetricAlert] = Field([], description=(
        "The metric alerts; the shipped config has the seed's three rows. Empty: the DAG evaluates nothing."))

    @model_validator(mode="before")
    @classmethod
    def _legacy_keys(cls, value: Any) -> Any:
        if not isinstance(value, dict) or not set(value) & set(LEGACY_ALERT_KEYS):
            return value
        value = dict(value)
        rows = [dict(r) if isinstance(r, dict) else r for r in value.get("metrics") or []]
        for key, (name, operation, metric, severity) in LEGACY_ALERT_KEYS.items():
            if key not in value:
                continue
            threshold = value.pop(key)
            row = next((r for r in rows if isinstance(r, dict) and r.get("name") == name), None)
            if row is None:
                rows.append({"name": name, "operation": operation, "metric": metric, "severity": severity,
                             "threshold": threshold})
            else:
                row["threshold"] = threshold
        value["metrics"] = rows
        return value

    @model_validator(mode="after")
    def _unique(self) -> Alerts:
        names = [m.name for m in self.metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"alerts.metrics: duplicate alert name(s) {dupes}")
        return self


# The database performance view and metrics (issue 15, docs/performance.md, docs/metrics.md).
# Declared here, not in migration_engine/perf: the config model cannot import that package (it
# imports the config: an import cycle). ``perf/sampler.py``, ``perf/view.py`` and
# ``perf/figures.py`` read every key.
class Perf(Strict):
    interval: Timeout = Field(timedelta(minutes=5), description=(
        "How often the migration_db_performance_sampler DAG samples both databases (its schedule; not "
        "scaled by time_scale). At least 1m."))
    # Not scaled by time_scale (like ``interval``): the sampler runs on wall-clock time, so a compressed
    # rehearsal must not shrink its history to minutes.
    retention: Timeout = Field(timedelta(days=30), description=(
        "Samples older than this are deleted by the sampler: the history the performance page can chart "
        "(not scaled by time_scale)."))
    chart_window: Timeout = Field(timedelta(hours=24), description=(
        "How far back the performance page charts and lists (not scaled by time_scale)."))
    latency_source: Literal["auto", "pg_stat_statements", "app_stats"] = Field("auto", description=(
        "Per-table query latency from 'pg_stat_statements' (p50/p95/p99 estimated from its per-statement "
        "counters), 'app_stats' (the p95 the application reports in path_stats, per entity's table), or "
        "'auto' (pg_stat_statements where the database has it, else the application's stats)."))
    max_tables: int = Field(50, ge=1, le=500, description=(
        "The largest tables of each database (by total size) that are sampled and shown."))
    statement_timeout: Timeout = Field(timedelta(seconds=10), description=(
        "statement_timeout of the sampler's and the page's reads: they share the application's databases."))
    connections_warn_pct: Pct = Field(80, description=(
        "Connections at or above this % of max_connections are shown (and emitted) as a warning."))
    metrics_window: Timeout = Field(timedelta(minutes=15), description=(
        "Window of the shadow-mismatch and per-path error-rate metrics the sampler emits (docs/metrics.md; "
        "not scaled by time_scale)."))

    @field_validator("interval")
    @classmethod
    def _at_least_a_minute(cls, value: timedelta) -> timedelta:
        if value < timedelta(minutes=1):
            raise ValueError(f"must be at least 1m (each sample reads every statement pg_stat_statements keeps), "
                             f"got {value}")
        return value


class MigrationConfig(Strict):
    version: Literal[1] = 1
    """Config format version (1)."""
    name: Annotated[str, Field(min_length=1)]
    """Name of this migration (shown in messages and the dashboard)."""
    connections: Connections
    """Airflow connection ids of the databases and Slack."""
    same_database: bool = False
    """true: the new tables live in the legacy database (both sides use `connections.legacy`)."""
    control_schema: Ident = "migration_control"
    """Schema in the legacy database holding flags, audit ledger and run state."""
    time_scale: Annotated[float, Field(gt=0, le=1)] = 1.0
    """Multiplies every window-type duration (holds, gates, ages, retention) for rehearsals, in (0, 1]; env
    `MIGRATION_TIME_SCALE` wins. Timeouts are never scaled."""
    entities: Annotated[dict[Ident, Entity], Field(min_length=1)]
    """The tables migrated: entity name -> old table, new table, keys and column mapping (at least one)."""
    references: list[Reference] = []
    """Cross-database referential integrity checks (phases 3-4, hourly)."""
    value_checks: list[ValueCheck] = []
    """Allowed-values / not-NULL checks on columns (Great Expectations suites)."""
    schema_changes: SchemaChanges = {}
    """Phase 1: changes to the legacy schema."""
    ddl: Ddl = {}
    """Timeouts and retries of every DDL statement."""
    backfill: Backfill = {}
    """Phase 2 historical backfill."""
    backup: Backup = {}
    """Pre-flight backup."""
    dual_write: DualWrite = {}
    """Phase 2 dual-write health gate."""
    cutover: Cutover = {}
    """Phase 5: checklist, read rollout and rollback settings."""
    cleanup: Cleanup = {}
    """Phase 6: archive and drop."""
    consistency: Consistency = {}
    """Phases 3-4 and the hourly consistency run."""
    slack: Slack = {}
    """Slack channels and links."""
    approvals: Approvals = {}
    """Who may answer each approval point, and how long it waits."""
    alerts: Alerts = {}
    """Metric alerts: the seed's alert table rows that no phase gate covers (`migration_metric_alerts`)."""
    deadlines: Deadlines = {}
    """Pages when a run or an approval runs out of time silently."""
    perf: Perf = Field({}, description="The database performance view and the metrics the sampler emits.")
    pacing: Pacing = Field(Pacing(), description=(
        "Pacing of phase 1's batched updates and the repair's batches (latency budget, health pauses); "
        "see docs/phase1.md."))

    @property
    def new_conn_id(self) -> str:
        """With ``same_database`` both sides live in the legacy connection's database."""
        return self.connections.legacy if self.same_database else self.connections.new

    def conn_id(self, side: Literal["legacy", "new"]) -> str:
        return self.connections.legacy if side == "legacy" else self.new_conn_id

    def approvers_for(self, point: str) -> list[Approver]:
        """The people who may answer ``point``: its own list, else ``default``."""
        return list(self.approvals.approvers.get(point, self.approvals.approvers.get("default", [])))


# --- loading -------------------------------------------------------------------------------
EXTENDS_KEY = "extends"


@dataclass(frozen=True)
class ConfigLayer:
    """One file of an overlay chain: its parsed YAML (without ``extends``) and when it was read."""

    path: Path
    data: dict[str, Any]
    mtime_ns: int


def deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """``overlay`` on top of ``base``: mappings merge key by key, lists and scalars replace.

    Lists replace because their items have no names to merge by (``cutover.rollout`` is given whole).
    """
    out = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(p: Path, extended_by: Path | None) -> ConfigLayer:
    try:
        stat = p.stat()
        text = p.read_text()
    except FileNotFoundError:
        if extended_by is not None:
            raise ConfigError(f"migration config {extended_by} extends {p}, which does not exist "
                              f"(`{EXTENDS_KEY}:` is relative to the file that says it)") from None
        raise ConfigError(f"migration config not found: {p} (set ${CONFIG_ENV} or create it)") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"migration config {p} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"migration config {p} must be a mapping at the top level, got {type(data).__name__}")
    return ConfigLayer(p, data, stat.st_mtime_ns)


def read_layers(path: Path | str) -> list[ConfigLayer]:
    """The file and every file it ``extends`` (transitively), base first; ``extends`` keys removed.

    A cycle or a missing base is a ConfigError naming the chain.
    """
    p, extended_by = Path(path), None
    chain: list[ConfigLayer] = []
    seen: list[Path] = []
    while True:
        resolved = p.resolve()
        if resolved in seen:
            names = " -> ".join(str(x) for x in [*[layer.path for layer in chain], p])
            raise ConfigError(f"migration config {chain[0].path}: `{EXTENDS_KEY}` cycle: {names}")
        seen.append(resolved)
        layer = _read_yaml(p, extended_by)
        data = dict(layer.data)
        parent = data.pop(EXTENDS_KEY, None)
        chain.append(ConfigLayer(p, data, layer.mtime_ns))
        if parent is None:
            break
        if not isinstance(parent, str) or not parent.strip():
            raise ConfigError(f"migration config {p}: `{EXTENDS_KEY}` must be the path of the base config "
                              f"(relative to {p.parent}), got {parent!r}")
        p, extended_by = p.parent / parent.strip(), p
    return chain[::-1]


def merge_layers(layers: list[ConfigLayer]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for layer in layers:
        data = deep_merge(data, layer.data)
    return data


def read_config_data(path: Path | str | None = None) -> dict[str, Any]:
    """The merged YAML of a config and its bases, before validation (what ``parse_config`` gets)."""
    return merge_layers(read_layers(Path(path) if path else config_path()))


def _origin(loc: tuple, layers: list[ConfigLayer]) -> str:
    """Which file(s) set the value at ``loc``: the last one for a scalar or list (they replace), every
    one that has it for a mapping (merged). Empty when no file has it (a missing key)."""
    found = []
    for layer in layers:
        node: Any = layer.data
        for part in loc:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
            else:
                break
        else:
            found = [*found, layer.path] if isinstance(node, dict) else [layer.path]
    return " + ".join(str(f) for f in found)


def format_validation_errors(exc: ValidationError, *, prefix: str = "",
                             layers: list[ConfigLayer] | None = None) -> list[str]:
    """One line per error: the key path (``prefix`` + loc), the message, the bad value and, for an
    overlay chain, the file(s) the value came from."""
    lines = []
    for err in exc.errors():
        loc_parts = tuple(p for p in err["loc"] if p not in ("function-after[_from_string()]",))
        loc = prefix + ".".join(str(p) for p in loc_parts)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not part of the config schema; check the spelling)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        got = err.get("input")
        quiet = err["type"] in ("missing", "extra_forbidden") or isinstance(got, dict) or repr(got) in msg
        suffix = "" if quiet else f" (got {got!r})"
        origin = _origin(loc_parts, layers) if layers and len(layers) > 1 else ""
        lines.append(f"  - {loc.rstrip('.') or '<top level>'}: {msg}{suffix}" + (f"  [{origin}]" if origin else ""))
    return lines


def parse_config(data: Any, *, source: Path | str = "<dict>", time_scale: float | None = None,
                 layers: list[ConfigLayer] | None = None) -> MigrationConfig:
    """Validate a dict (already parsed, merged YAML). ``time_scale`` overrides the file's value.

    ``layers`` (the overlay chain the dict was merged from) lets each error name the file it came from.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"migration config {source} must be a mapping at the top level, got {type(data).__name__}")
    if time_scale is not None:
        data = {**data, "time_scale": time_scale}
    raw = data.get("time_scale", 1.0)
    valid = isinstance(raw, (int, float)) and not isinstance(raw, bool) and 0 < raw <= 1
    scale = raw if valid else 1.0  # an invalid value is reported by the model itself
    try:
        return MigrationConfig.model_validate(data, context={"time_scale": scale})
    except ValidationError as exc:
        chain = "" if not layers or len(layers) < 2 else \
            " (extends " + " -> ".join(str(layer.path) for layer in layers[-2::-1]) + ")"
        raise ConfigError(f"migration config {source}{chain} is invalid:\n"
                          + "\n".join(format_validation_errors(exc, layers=layers))) from None


_cache: dict[tuple, tuple[tuple[tuple[str, int], ...], MigrationConfig]] = {}


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def _unchanged(stamps: tuple[tuple[str, int], ...]) -> bool:
    try:
        return all(Path(f).stat().st_mtime_ns == m for f, m in stamps)
    except OSError:
        return False


def load_config(path: Path | str | None = None) -> MigrationConfig:
    """Read, merge (``extends``) and validate the config.

    Cached on (path, time-scale env) while no file of the chain changed (mtime), so DAG parsing is cheap.
    """
    p = Path(path) if path else config_path()
    env_scale = os.environ.get(TIME_SCALE_ENV)
    key = (str(p), env_scale)
    hit = _cache.get(key)
    if hit and _unchanged(hit[0]):
        return hit[1]
    scale = None
    if env_scale:
        try:
            scale = float(env_scale)
        except ValueError:
            raise ConfigError(f"${TIME_SCALE_ENV}={env_scale!r} is not a number") from None
        if not 0 < scale <= 1:
            raise ConfigError(f"${TIME_SCALE_ENV}={env_scale!r} must be in (0, 1]")
    layers = read_layers(p)
    cfg = parse_config(merge_layers(layers), source=p, time_scale=scale, layers=layers)
    _cache.clear()
    _cache[key] = (tuple((str(layer.path), layer.mtime_ns) for layer in layers), cfg)
    return cfg
