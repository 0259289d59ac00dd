"""Phase 1 (schema preparation) as steps built from ``cfg.schema_changes`` - nothing hard-coded.

Groups follow the seed: 1.1 add columns, 1.2 indexes, 1.3 defaults / NOT NULL / CHECK. Where the
seed's SQL is unsafe we deviate (see docs/phase1.md):

* 1.3 does not run one transaction of ``UPDATE`` + ``SET NOT NULL`` + ``ADD CONSTRAINT``: it sets
  the default, backfills NULLs in key-range batches (short transactions), adds
  ``CHECK (col IS NOT NULL) NOT VALID``, ``VALIDATE``s it (no read/write blocking), then
  ``SET NOT NULL``, which Postgres >= 12 proves from the validated check without a scan, and drops
  the helper check (pgroll does the same). Value checks are added ``NOT VALID`` and validated.
* every statement runs under lock_timeout/statement_timeout with retry (migration_engine.ddl).
* ``idx_invoices_marketplace_transaction`` follows step 1.2 (the appendix differs); an existing
  valid index with that name but another definition stops the step with a message.

Schema changes apply to the legacy database (``connections.legacy``), where the control schema
lives too.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import psycopg2.errors
from psycopg2 import sql

from migration_engine import control, db, keys, pacing, preflight
from migration_engine.config import AddCheck, AddColumn, CreateIndex, MigrationConfig, SetRequired, TableRef
from migration_engine.ddl import DdlError, DdlExecutor, IndexSpec
from migration_engine.errors import VerificationError
from migration_engine.sqltypes import canonical_type
from migration_engine.steps import RevertRefused, Step, StepResult, StepRunner, get_state, summarize_plan

log = logging.getLogger(__name__)

PHASE = "phase1"
GROUPS = ("1.1", "1.2", "1.3")
GROUP_TITLES = {
    "1.1": "Step 1.1: add columns",
    "1.2": "Step 1.2: add indexes (CONCURRENTLY)",
    "1.3": "Step 1.3: defaults, NOT NULL, CHECK constraints",
}


# --- types -----------------------------------------------------------------------------------
def info_schema_type(row: dict[str, Any]) -> str:
    data_type = row["data_type"]
    if row["character_maximum_length"] is not None:
        return f"{data_type}({row['character_maximum_length']})"
    if data_type == "numeric" and row["numeric_precision"] is not None:
        return f"numeric({row['numeric_precision']},{row['numeric_scale'] or 0})"
    return data_type


def value_text(value: Any) -> str | None:
    """A config value as Postgres prints it in text form (for comparisons done as text)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def helper_check_name(table: str, column: str) -> str:
    name = f"{table}_{column}_not_null"
    if len(name) <= 63:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    return f"{name[:54]}_{digest}"


def _ids(table: TableRef, **extra: Any) -> dict[str, Any]:
    return {"schema": table.schema_name, "table": table.table, **extra}


def _v(ex: DdlExecutor, done: str, planned: str) -> str:
    """Notes read right in both modes: what was done, or (dry run) what would be done."""
    return planned if ex.planning else done


def _require_table(ex: DdlExecutor, table: TableRef, where: str) -> None:
    if not ex.relation_exists(table):
        raise DdlError(f"table {table} ({where}) does not exist in the legacy database")


# --- steps -----------------------------------------------------------------------------------
class AddColumnStep(Step):
    phase = PHASE

    def __init__(self, spec: AddColumn, index: int):
        self.spec = spec
        self.where = f"schema_changes.add_columns[{index}]"
        self.step_id = f"phase1.1_1.add_column.{spec.table}.{spec.column}"
        self.title = f"add column {spec.table}.{spec.column} {spec.type}"

    def before_state(self, ex: DdlExecutor) -> dict[str, Any]:
        st = ex.column_state(self.spec.table, self.spec.column)
        if st is None:
            return {"exists": False}
        return {"exists": True, "type": st["column_type"], "default": st["column_default"],
                "not_null": st["not_null"]}

    def apply(self, ex: DdlExecutor) -> list[str]:
        s = self.spec
        _require_table(ex, s.table, self.where)
        st = ex.column_state(s.table, s.column)
        ids = _ids(s.table, column=s.column, column_type=sql.SQL(canonical_type(s.type)))
        if st is None:
            if s.default is None:
                ex.execute("ddl/add_column.sql", ids, table=s.table, what=self.title)
            else:
                ex.execute("ddl/add_column_default.sql", ids, {"default_value": s.default}, table=s.table,
                           what=self.title)
            return [f"{s.table}.{s.column}: {_v(ex, 'added', 'to be added')}"]
        if st["column_type"] != canonical_type(s.type):
            raise DdlError(f"{s.table}.{s.column} already exists as {st['column_type']}, but {self.where} wants "
                           f"{canonical_type(s.type)}; phase 1 does not change column types - fix the config or "
                           f"the column")
        if s.default is not None and st["column_default"] is None:
            ex.execute("ddl/set_default.sql", _ids(s.table, column=s.column), {"default_value": s.default},
                       table=s.table, what=f"set default of {s.table}.{s.column}")
            return [f"{s.table}.{s.column}: existed, default {_v(ex, 'added', 'to be added')}"]
        return [f"{s.table}.{s.column}: already present"]

    def problems(self, ex: DdlExecutor) -> list[str]:
        s = self.spec
        rows = ex.query_dicts("phase1/column_info.sql", params={
            "schema_name": s.table.schema_name, "table_name": s.table.table, "column_name": s.column})
        if not rows:
            return [f"column {s.table}.{s.column} is missing (information_schema.columns)"]
        row, out = rows[0], []
        if info_schema_type(row) != canonical_type(s.type):
            out.append(f"column {s.table}.{s.column} has type {info_schema_type(row)}, "
                       f"expected {canonical_type(s.type)}")
        if s.default is not None and row["column_default"] is None:
            out.append(f"column {s.table}.{s.column} has no default, expected {s.default!r}")
        return out

    def revert(self, ex: DdlExecutor, before: dict[str, Any]) -> list[str]:
        s = self.spec
        st = ex.column_state(s.table, s.column)
        if st is None:
            return [f"{s.table}.{s.column}: already gone"]
        if not before.get("exists"):
            ex.execute("ddl/drop_column.sql", _ids(s.table, column=s.column), table=s.table,
                       what=f"drop column {s.table}.{s.column}")
            return [f"{s.table}.{s.column}: dropped"]
        if before.get("default") is None and st["column_default"] is not None:
            ex.execute("ddl/drop_default.sql", _ids(s.table, column=s.column), table=s.table,
                       what=f"drop default of {s.table}.{s.column}")
            return [f"{s.table}.{s.column}: existed before phase 1; default removed"]
        return [f"{s.table}.{s.column}: existed before phase 1; kept"]


class CreateIndexStep(Step):
    phase = PHASE

    def __init__(self, spec: CreateIndex, index: int, *, progress: Callable[[], Any] | None = None):
        self.spec = spec
        self.progress = progress  # opens a second connection to log build progress
        self.where = f"schema_changes.indexes[{index}]"
        self.step_id = f"phase1.1_2.index.{spec.table.schema_name}.{spec.name}"
        self.title = f"index {spec.name} on {spec.table} ({', '.join(spec.columns)})"
        w = spec.where
        self.index = IndexSpec(
            schema=spec.table.schema_name, table=spec.table.table, name=spec.name, columns=tuple(spec.columns),
            unique=spec.unique, where_column=w.column if w else None, where_not_null=bool(w and w.is_not_null),
            where_equals=w.equals if w else None,
        )

    def before_state(self, ex: DdlExecutor) -> dict[str, Any]:
        st = ex.index_state(self.index.schema, self.index.name)
        return {"exists_valid": bool(st and st["indisvalid"])}  # an INVALID leftover is not an index

    def apply(self, ex: DdlExecutor) -> list[str]:
        _require_table(ex, self.spec.table, self.where)
        if ex.connect is None:
            ex.connect = self.progress
        outcome = ex.ensure_index(self.index)
        return [f"{self.spec.name}: {outcome}"]

    def problems(self, ex: DdlExecutor) -> list[str]:
        st = ex.index_state(self.index.schema, self.index.name)
        if st is None:
            return [f"index {self.index.schema}.{self.index.name} is missing"]
        out = []
        if not st["indisvalid"] or not st["indisready"]:
            out.append(f"index {self.index.schema}.{self.index.name} is INVALID (pg_index.indisvalid=false)")
        mismatch = self.index.mismatch(st)
        if mismatch:
            out.append(f"index {self.index.schema}.{self.index.name} differs from the config: {mismatch}")
        return out

    def revert(self, ex: DdlExecutor, before: dict[str, Any]) -> list[str]:
        if before.get("exists_valid"):
            return [f"{self.spec.name}: existed before phase 1; kept"]
        dropped = ex.drop_index(self.index.schema, self.index.name)
        return [f"{self.spec.name}: {'dropped concurrently' if dropped else 'already gone'}"]

    def revert_problems(self, ex: DdlExecutor, before: dict[str, Any]) -> list[str]:
        if before.get("exists_valid"):
            return []
        st = ex.index_state(self.index.schema, self.index.name)
        return [f"index {self.index.schema}.{self.index.name} still exists"] if st else []


class SetRequiredStep(Step):
    """Default + batched backfill + (NOT VALID check -> VALIDATE -> SET NOT NULL -> drop helper)."""

    phase = PHASE

    def __init__(self, spec: SetRequired, index: int, batch_size: int,
                 pacing: Callable[[DdlExecutor, SetRequired, str], Any] | None = None):
        self.spec = spec
        self.batch_size = batch_size
        self.pacing = pacing  # (ex, spec, key) -> a started-on-enter pacing.Pacer for the batched backfill
        self.paced: dict[str, Any] | None = None  # what the pacing did in the last apply (for the notes)
        self.where = f"schema_changes.required[{index}]"
        self.step_id = f"phase1.1_3.required.{spec.table}.{spec.column}"
        self.title = f"default {spec.value!r}{' and NOT NULL' if spec.not_null else ''} on {spec.table}.{spec.column}"
        self.helper = helper_check_name(spec.table.table, spec.column)

    def before_state(self, ex: DdlExecutor) -> dict[str, Any]:
        st = ex.column_state(self.spec.table, self.spec.column)
        helper = ex.constraint_state(self.spec.table, self.helper) if ex.relation_exists(self.spec.table) else None
        return {"column_exists": st is not None, "not_null": bool(st and st["not_null"]),
                "default": st["column_default"] if st else None, "helper_check": helper is not None}

    def _key(self, ex: DdlExecutor) -> str:
        key = self.spec.key or ex.primary_key(self.spec.table)
        if key is None:
            raise DdlError(f"{self.spec.table} has no one-column primary key to batch the backfill by; set "
                           f"{self.where}.key to an indexed, unique column")
        try:  # batches are bounded by ORDER BY key: any supported key type (int, uuid, text ...)
            keys.read_key(ex.conn, schema=self.spec.table.schema_name, table=self.spec.table.table, column=key,
                          what=f"{self.where} (batching {self.spec.table}.{self.spec.column})")
        except keys.UnsupportedKey as exc:
            raise DdlError(f"{exc}; set {self.where}.key to another indexed, unique column") from exc
        return key

    def _backfill(self, ex: DdlExecutor) -> int:
        """The batched backfill, paced between batches (health pause, latency budget, rate cap)."""
        s, key = self.spec, self._key(ex)
        if ex.planning or self.pacing is None:
            return ex.backfill(s.table, s.column, key, s.value, batch_size=self.batch_size)
        with self.pacing(ex, s, key) as pacer:
            n = ex.backfill(s.table, s.column, key, s.value, batch_size=self.batch_size, pacer=pacer)
        self.paced = pacer.stats.as_dict()
        return n

    def apply(self, ex: DdlExecutor) -> list[str]:
        s, notes = self.spec, []
        _require_table(ex, s.table, self.where)
        st = ex.column_state(s.table, s.column)
        if st is None:
            if not ex.planning:
                raise DdlError(f"column {s.table}.{s.column} ({self.where}) does not exist; add it in "
                               f"schema_changes.add_columns (step 1.1) first")
            st = {"not_null": False, "column_default": None}
            notes.append(f"{s.table}.{s.column} does not exist yet: planned as if step 1.1 had run")
        col = _ids(s.table, column=s.column)
        # 1. Default first: rows inserted from now on get the value, closing the window in which the
        #    backfill could be outrun by new NULLs.
        if st["column_default"] is None:
            ex.execute("ddl/set_default.sql", col, {"default_value": s.value}, table=s.table,
                       what=f"set default of {s.table}.{s.column}")
            notes.append(_v(ex, "default set", "default to be set"))
        if st["not_null"]:
            notes.append("already NOT NULL")
        else:
            # 2. Backfill existing NULLs in key-range batches (skipped when there are none).
            nulls = None if ex.planning else ex.null_count(s.table, s.column)
            if nulls != 0:
                n = self._backfill(ex)
                notes.append(f"backfilled {n} rows" if not ex.planning else "backfill planned")
                if not ex.planning and self.paced:
                    p = self.paced
                    notes.append(f"paced: {p['batches']} batch(es), slept {p['slept_seconds']:.1f}s, "
                                 f"paused {p['paused_seconds']:.1f}s ({len(p['pauses'])} pause(s))")
            if s.not_null:
                notes += self._not_null(ex, col)
        if s.not_null and not s.keep_not_null_check and ex.constraint_state(s.table, self.helper) is not None:
            ex.execute("ddl/drop_constraint.sql", _ids(s.table, constraint=self.helper), table=s.table,
                       what=f"drop helper check {self.helper}")
            notes.append(f"helper check {self.helper} {_v(ex, 'dropped', 'to be dropped')}")
        return notes

    def _not_null(self, ex: DdlExecutor, col: dict) -> list[str]:
        s, notes = self.spec, []
        chk = _ids(s.table, constraint=self.helper, column=s.column)
        state = ex.constraint_state(s.table, self.helper)
        if state is None:
            ex.execute("ddl/add_not_null_check.sql", chk, table=s.table, what=f"add {self.helper} NOT VALID")
            notes.append(f"{self.helper} {_v(ex, 'added', 'to be added')} NOT VALID")
        if state is None or not state["convalidated"]:
            try:
                ex.execute("ddl/validate_constraint.sql", chk, table=s.table, what=f"validate {self.helper}")
            except psycopg2.errors.CheckViolation:
                # A row got a NULL between the backfill and the NOT VALID check (explicit NULL insert):
                # sweep once more - the check now stops new NULLs - and validate again.
                n = self._backfill(ex)
                log.warning("%s: %d rows became NULL during the backfill; swept, validating again", self.step_id, n)
                ex.execute("ddl/validate_constraint.sql", chk, table=s.table, what=f"validate {self.helper}")
            notes.append(f"{self.helper} {_v(ex, 'validated', 'to be validated')}")
        ex.execute("ddl/set_not_null.sql", col, table=s.table, what=f"set NOT NULL on {s.table}.{s.column}")
        notes.append(_v(ex, "NOT NULL set", "NOT NULL to be set") + " (proved by the validated check, no table scan)")
        return notes

    def problems(self, ex: DdlExecutor) -> list[str]:
        s = self.spec
        rows = ex.query_dicts("phase1/column_info.sql", params={
            "schema_name": s.table.schema_name, "table_name": s.table.table, "column_name": s.column})
        if not rows:
            return [f"column {s.table}.{s.column} is missing"]
        row, out = rows[0], []
        if row["column_default"] is None:
            out.append(f"column {s.table}.{s.column} has no default, expected {s.value!r}")
        nulls = ex.null_count(s.table, s.column)
        if nulls:
            out.append(f"{s.table}.{s.column} still has {nulls} NULL values")
        if s.not_null and row["is_nullable"] != "NO":
            out.append(f"{s.table}.{s.column} is nullable, expected NOT NULL")
        helper = ex.constraint_state(s.table, self.helper)
        if s.not_null and s.keep_not_null_check and (helper is None or not helper["convalidated"]):
            out.append(f"helper check {self.helper} is missing or not validated")
        if s.not_null and not s.keep_not_null_check and helper is not None:
            out.append(f"helper check {self.helper} was not dropped")
        return out

    def revert(self, ex: DdlExecutor, before: dict[str, Any]) -> list[str]:
        s, notes = self.spec, []
        st = ex.column_state(s.table, s.column)
        if st is None:
            return [f"{s.table}.{s.column}: column gone"]
        col = _ids(s.table, column=s.column)
        if not before.get("helper_check") and ex.constraint_state(s.table, self.helper) is not None:
            ex.execute("ddl/drop_constraint.sql", _ids(s.table, constraint=self.helper), table=s.table,
                       what=f"drop helper check {self.helper}")
            notes.append(f"{self.helper} dropped")
        if st["not_null"] and not before.get("not_null"):
            ex.execute("ddl/drop_not_null.sql", col, table=s.table, what=f"drop NOT NULL on {s.table}.{s.column}")
            notes.append("NOT NULL dropped")
        if st["column_default"] is not None and before.get("default") is None:
            ex.execute("ddl/drop_default.sql", col, table=s.table, what=f"drop default of {s.table}.{s.column}")
            notes.append("default dropped")
        notes.append("backfilled values are left in place (the column is dropped by step 1.1's revert "
                     "when phase 1 added it)")
        return notes

    def revert_problems(self, ex: DdlExecutor, before: dict[str, Any]) -> list[str]:
        now = self.before_state(ex)
        if not now["column_exists"]:
            return []  # dropped by 1.1's revert later, or never there
        return [f"{k}: expected {before.get(k)!r}, found {now.get(k)!r}"
                for k in ("not_null", "default", "helper_check") if now.get(k) != before.get(k)]


class AddCheckStep(Step):
    phase = PHASE

    def __init__(self, spec: AddCheck, index: int):
        self.spec = spec
        self.where = f"schema_changes.checks[{index}]"
        self.step_id = f"phase1.1_3.check.{spec.table}.{spec.name}"
        self.title = f"CHECK {spec.name}: {spec.table}.{spec.column} in {spec.allowed}"

    def before_state(self, ex: DdlExecutor) -> dict[str, Any]:
        st = ex.constraint_state(self.spec.table, self.spec.name) if ex.relation_exists(self.spec.table) else None
        return {"exists": st is not None}

    def apply(self, ex: DdlExecutor) -> list[str]:
        s = self.spec
        _require_table(ex, s.table, self.where)
        ids = _ids(s.table, constraint=s.name, column=s.column)
        st = ex.constraint_state(s.table, s.name)
        notes = []
        if st is None:
            ex.execute("ddl/add_allowed_values_check.sql", ids, {"allowed": list(s.allowed)}, table=s.table,
                       what=f"add {s.name} NOT VALID")
            notes.append(f"{s.name} {_v(ex, 'added', 'to be added')} NOT VALID")
        elif st["contype"] != "c":
            raise DdlError(f"constraint {s.name} on {s.table} exists but is not a CHECK ({st['definition']})")
        elif s.column not in st["definition"]:
            raise DdlError(f"constraint {s.name} on {s.table} exists but does not check {s.column}: "
                           f"{st['definition']}; rename {self.where}.name or drop the constraint")
        if st is None or not st["convalidated"]:
            ex.execute("ddl/validate_constraint.sql", ids, table=s.table, what=f"validate {s.name}")
            notes.append(f"{s.name} {_v(ex, 'validated', 'to be validated')}")
        return notes or [f"{s.name}: already present and validated"]

    def problems(self, ex: DdlExecutor) -> list[str]:
        s = self.spec
        st = ex.constraint_state(s.table, s.name)
        if st is None:
            return [f"constraint {s.name} on {s.table} is missing"]
        out = []
        if not st["convalidated"]:
            out.append(f"constraint {s.name} on {s.table} is NOT VALID (pg_constraint.convalidated=false)")
        missing = [v for v in s.allowed if f"'{v}'" not in st["definition"]]
        if missing:
            out.append(f"constraint {s.name} does not allow {missing}: {st['definition']}")
        return out

    def revert(self, ex: DdlExecutor, before: dict[str, Any]) -> list[str]:
        s = self.spec
        if before.get("exists"):
            return [f"{s.name}: existed before phase 1; kept"]
        if ex.relation_exists(s.table) and ex.constraint_state(s.table, s.name) is not None:
            ex.execute("ddl/drop_constraint.sql", _ids(s.table, constraint=s.name), table=s.table,
                       what=f"drop constraint {s.name}")
            return [f"{s.name}: dropped"]
        return [f"{s.name}: already gone"]


# --- building and running --------------------------------------------------------------------
def build_steps(cfg: MigrationConfig) -> dict[str, list[Step]]:
    sc = cfg.schema_changes
    progress = _progress_connection(cfg)
    return {
        "1.1": [AddColumnStep(c, i) for i, c in enumerate(sc.add_columns)],
        "1.2": [CreateIndexStep(x, i, progress=progress) for i, x in enumerate(sc.indexes)],
        "1.3": [SetRequiredStep(r, i, cfg.ddl.update_batch_size, pacing=pacer_factory(cfg))
                for i, r in enumerate(sc.required)]
               + [AddCheckStep(c, i) for i, c in enumerate(sc.checks)],
    }


def pacer_factory(cfg: MigrationConfig, *, probe: Callable[[SetRequired, str], pacing.SignalSource] | None = None
                  ) -> Callable[[DdlExecutor, SetRequired, str], pacing.Pacer]:
    """How step 1.3 paces its batched backfill (``pacing.phase1``): health on the executor's connection,
    ledger entries ``phase1_backfill_*``, the latency probe on the legacy table being updated (its own
    connection). ``probe`` replaces that probe (tests: a simulated latency signal)."""
    work = cfg.pacing.phase1

    def make(ex: DdlExecutor, spec: SetRequired, key: str) -> pacing.Pacer:
        t = spec.table
        source = None
        if pacing.controller_on(work, cfg.backfill):
            source = probe(spec, key) if probe is not None else pacing.LookupProbe(
                {"legacy": pacing.ProbeTarget(
                    lambda: db.connect(cfg.connections.legacy, application_name=pacing.APPLICATION_NAME),
                    t.schema_name, t.table, key)},
                cfg.backfill.throttle.budget, label=f"{t}.{spec.column}")
        return pacing.Pacer(cfg, work, action="phase1_backfill", target=f"{t}.{spec.column}", legacy=ex.conn,
                            tables={"legacy": (t.schema_name, t.table)}, probe=source,
                            entity=pacing.app_entity(cfg, t.schema_name, t.table), actor=ex.actor,
                            context=ex.context, sleep=ex.sleep)

    return make


def _progress_connection(cfg: MigrationConfig) -> Callable[[], Any]:
    """A second connection for index-build progress (opened by the executor only while building)."""
    return lambda: db.connect(cfg.connections.legacy, application_name="zdm-index-progress")


def _group(cfg: MigrationConfig, group: str) -> list[Step]:
    steps = build_steps(cfg)
    if group not in steps:
        raise ValueError(f"unknown phase-1 step group {group!r}; expected one of {list(steps)}")
    return steps[group]


# The step builders the DAGs hand to the Airflow layer's run_steps (one group per task). Reverts
# take a group's steps last-applied first.
def columns_steps(cfg: MigrationConfig) -> list[Step]:
    return _group(cfg, "1.1")


def index_steps(cfg: MigrationConfig) -> list[Step]:
    return _group(cfg, "1.2")


def constraint_steps(cfg: MigrationConfig) -> list[Step]:
    return _group(cfg, "1.3")


def columns_revert_steps(cfg: MigrationConfig) -> list[Step]:
    return list(reversed(_group(cfg, "1.1")))


def index_revert_steps(cfg: MigrationConfig) -> list[Step]:
    return list(reversed(_group(cfg, "1.2")))


def constraint_revert_steps(cfg: MigrationConfig) -> list[Step]:
    return list(reversed(_group(cfg, "1.3")))


def _runner(conn, cfg: MigrationConfig, actor: str, context: dict | None) -> StepRunner:
    return StepRunner(conn, schema=cfg.control_schema, ddl=cfg.ddl, actor=actor, context=context,
                      connect=_progress_connection(cfg))


def prepare(conn, cfg: MigrationConfig, *, actor: str = "", context: dict | None = None,
            dry_run: bool = False) -> dict[str, Any]:
    """The preflight of schema_changes (tables, columns, batch keys); create the control schema (not in
    a dry run)."""
    sc = cfg.schema_changes
    tables = sorted({str(x.table) for group in (sc.add_columns, sc.indexes, sc.required, sc.checks) for x in group})
    if not tables:
        raise DdlError("schema_changes in the migration config is empty: phase 1 has nothing to do")
    # every table, column and batch key of schema_changes (one PreflightError listing all problems)
    preflight.check_or_raise(cfg, conn, conn, parts=(preflight.SCHEMA_CHANGES,))
    if not dry_run:
        control.ensure_control_schema(conn, cfg.control_schema, cfg.ddl)
    return {"tables": tables, "dry_run": dry_run,
            "steps": {g: [s.step_id for s in steps] for g, steps in build_steps(cfg).items()}}


def plan_text(group: str, results: Sequence[StepResult]) -> str:
    """A group's dry-run plan as one SQL text (the statements exactly as sent, notes as comments)."""
    lines = [f"-- {GROUP_TITLES[group]} (dry run: nothing is executed)"]
    for r in results:
        lines.append(f"-- {r.step_id}: {'; '.join(r.notes)}")
        lines += [s.rstrip().rstrip(";") + ";" for s in summarize_plan(r.executed)] or ["-- (nothing to do)"]
    return "\n".join(lines)


def apply_group(conn, cfg: MigrationConfig, group: str, *, actor: str, context: dict | None = None,
                dry_run: bool = False, verify: bool = True) -> dict[str, Any]:
    """Apply and verify (or, dry run, plan) one step group on ``conn`` (engine-level; the DAGs go
    through the Airflow layer's ``run_steps``, which does the same)."""
    steps = _group(cfg, group)
    runner = _runner(conn, cfg, actor, context)
    if dry_run:
        results = runner.plan(steps)
        return {"group": group, "dry_run": True, "plan": plan_text(group, results),
                "steps": [{**r.as_dict(), "executed": summarize_plan(r.executed)} for r in results]}
    results = runner.apply(steps)
    if verify:
        runner.verify(steps)
    return {"group": group, "dry_run": False, "changed": any(r.changed for r in results),
            "steps": [{**r.as_dict(), "executed": summarize_plan(r.executed)} for r in results]}


def finish(conn, cfg: MigrationConfig, *, actor: str, context: dict | None = None,
           dry_run: bool = False) -> dict[str, Any]:
    """The ``phase1.completed`` ledger entry (nothing in a dry run: nothing was applied)."""
    steps = [s for g in GROUPS for s in _group(cfg, g)]
    if dry_run:
        log.info("dry run: phase 1 was planned, not applied; no phase1.completed entry")
        return {"dry_run": True, "steps": len(steps)}
    conn.autocommit = True
    control.audit(conn, cfg.control_schema, actor=actor, action="phase1.completed", target=PHASE,
                  details={**(context or {}), "steps": [s.step_id for s in steps]},
                  reason="phase 1 schema preparation applied and verified")
    return {"dry_run": False, "steps": len(steps)}


# --- rollback --------------------------------------------------------------------------------
def rollback_plan(conn, cfg: MigrationConfig, *, allow_data_loss: bool = False, actor: str = "",
                  context: dict | None = None, dry_run: bool = False) -> dict[str, Any]:
    """The exact SQL of a phase-1 rollback, and the data it would destroy (reads only).

    Refuses (RevertRefused) when nothing was ever applied, or when a column phase 1 added now
    holds values the phase did not put there (the application started using it) unless
    ``allow_data_loss``. ``dry_run`` changes nothing here (the plan never writes); the DAG stops
    before the approval on a dry run.
    """
    groups = {g: list(reversed(_group(cfg, g))) for g in reversed(GROUPS)}
    if not control.control_schema_exists(conn, cfg.control_schema):
        raise RevertRefused(f"control schema {cfg.control_schema} does not exist: phase 1 was never "
                            f"applied by this engine here, there is nothing recorded to roll back")
    runner = _runner(conn, cfg, actor, context)
    plans = {g: runner.revert_plan(steps) for g, steps in groups.items()}
    recorded = sum(1 for results in plans.values() for r in results if "before" in r.details)
    if recorded == 0:
        raise RevertRefused("no phase-1 step has a recorded apply (or all are already reverted): "
                            "nothing to roll back")
    at_risk = _data_at_risk(conn, cfg)
    lines = ["-- Phase 1 rollback plan (reverse order: 1.3, 1.2, 1.1)"]
    for g, results in plans.items():
        lines.append(f"-- revert {GROUP_TITLES[g]}")
        for r in results:
            lines.append(f"-- {r.step_id}: {'; '.join(r.notes) or 'revert'}")
            lines += [s.rstrip().rstrip(";") + ";" for s in r.executed]
    if at_risk:
        lines.append("-- DATA LOSS: these added columns hold values phase 1 did not write:")
        lines += [f"--   {k}: {v} rows" for k, v in at_risk.items()]
    text = "\n".join(lines)
    log.info("%s%s", "DRY RUN " if dry_run else "", text)  # the plan belongs in the task log verbatim
    if at_risk and not allow_data_loss:
        raise RevertRefused(
            "rolling back phase 1 would drop columns that now hold application data: "
            + ", ".join(f"{k} ({v} rows)" for k, v in at_risk.items())
            + ". Stop the application writing them (and later phases) first, or re-run with "
              "allow_data_loss=true if losing that data is intended."
        )
    return {"plan": text, "data_at_risk": at_risk,
            "steps": {g: [r.as_dict() for r in results] for g, results in plans.items()}}


def rollback_summary(conn, cfg: MigrationConfig, **kwargs: Any) -> dict[str, Any]:
    """The plan and the data at risk (what the approval shows), without the per-step detail."""
    plan = rollback_plan(conn, cfg, **kwargs)
    return {"plan": plan["plan"], "data_at_risk": plan["data_at_risk"]}


def _data_at_risk(conn, cfg: MigrationConfig) -> dict[str, int]:
    """Rows per added column holding something other than NULL / the phase's own value."""
    sc = cfg.schema_changes
    phase_value = {(str(r.table), r.column): r.value for r in sc.required}
    out: dict[str, int] = {}
    ex = DdlExecutor(conn, cfg.ddl, planning=True)
    for c in sc.add_columns:
        state = get_state(conn, cfg.control_schema, AddColumnStep(c, 0).step_id)
        if not state or state["status"] == "reverted" or state["details"].get("before", {}).get("exists", True):
            continue  # not added by phase 1: the rollback keeps it
        if ex.column_state(c.table, c.column) is None:
            continue
        value = phase_value.get((str(c.table), c.column), c.default)
        n = ex.query("phase1/column_data_count.sql", _ids(c.table, column=c.column),
                     {"phase_value": value_text(value)})[0][0]
        if n:
            out[f"{c.table}.{c.column}"] = n
    return out


def revert_group(conn, cfg: MigrationConfig, group: str, *, actor: str,
                 context: dict | None = None) -> dict[str, Any]:
    """Revert one group, last-applied step first (engine-level; the DAG uses ``run_steps``)."""
    steps = list(reversed(_group(cfg, group)))
    results = _runner(conn, cfg, actor, context).revert(steps)
    return {"group": group, "steps": [r.as_dict() for r in results]}


def verify_rollback(conn, cfg: MigrationConfig, *, actor: str, context: dict | None = None) -> dict[str, Any]:
    """Every step's catalog state equals what was recorded before phase 1 first applied it."""
    problems: list[str] = []
    ex = DdlExecutor(conn, cfg.ddl, planning=True)
    checked = 0
    for g in GROUPS:
        for step in _group(cfg, g):
            state = get_state(conn, cfg.control_schema, step.step_id)
            if state is None or "before" not in state["details"]:
                continue
            checked += 1
            if state["status"] != "reverted":
                problems.append(f"{step.step_id}: status is {state['status']}, not reverted")
            problems += [f"{step.step_id}: {p}" for p in step.revert_problems(ex, state["details"]["before"])]
    if problems:
        raise VerificationError(problems, step_id="phase 1 rollback incomplete")
    control.audit(conn, cfg.control_schema, actor=actor, action="phase1.rolled_back", target=PHASE,
                  details={**(context or {}), "steps_checked": checked},
                  reason="schema returned to its state before phase 1")
    return {"steps_checked": checked}
