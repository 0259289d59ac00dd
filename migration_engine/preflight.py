"""The preflight: the config checked against both databases before anything changes.

Why: a config that names a missing column, a key without the UNIQUE constraint the backfill's
``ON CONFLICT`` needs, or a ``numeric`` column copied into a ``bigint`` one passes the model's
validation (it knows no database) and used to fail much later - after dual-write was switched on.
The preflight reads the catalogs (never a row of data, except one row of each lookup table to see it
is not empty) in read-only transactions, and reports **every** problem together, each named by its
config path (``entities.orders.columns[3].new``), as one :class:`PreflightError` (a ConfigError).

It is the first task of ``migration_setup`` (before the control schema exists), and each phase's
entry point runs the part it relies on: phase 1's ``prepare`` the schema changes, phase 2's
dual-write switch and the backfill plan the entities, the consistency runs (phases 3-4, hourly) the
entities, references, value checks and count parity, phase 6 its cleanup tables.

Types: a mapping's output type is not looked up in a hand-written table: the backfill's own select
expressions (``EntitySql.select_items(probe=True)``) run ``LIMIT 0`` on the old table and the server
reports each result column's type, so every transform the mapping composes is covered. The output
then travels as COPY text into a column typed like the new one, so :func:`conversion_problem`
refuses what can fail or lose information there (numeric -> bigint, bigint -> integer, a longer
varchar, timestamptz -> timestamp, text -> an enum ...); Postgres' own implicit casts (pg_cast,
information-preserving by design) are accepted, except the ones into floating point that round.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from migration_engine import db, sqlfiles
from migration_engine.backfill.sqlgen import EntitySql
from migration_engine.config import Entity, MigrationConfig, TableRef
from migration_engine.errors import ConfigError
from migration_engine.sqltypes import canonical_type

log = logging.getLogger(__name__)

PREFLIGHT_APP = "migration-preflight"

# The parts a caller can ask for (the setup DAG runs all of them).
ENTITIES = "entities"
REFERENCES = "references"
VALUE_CHECKS = "value_checks"
COUNT_PARITY = "count_parity"
SCHEMA_CHANGES = "schema_changes"
CLEANUP = "cleanup"
ALL_PARTS = (ENTITIES, REFERENCES, VALUE_CHECKS, COUNT_PARITY, SCHEMA_CHANGES, CLEANUP)
CONSISTENCY_PARTS = (ENTITIES, REFERENCES, VALUE_CHECKS, COUNT_PARITY)

# pg_type oids of the built-in types the rules below name
INT2, INT4, INT8, NUMERIC, FLOAT4, FLOAT8 = 21, 23, 20, 1700, 700, 701
TEXT, VARCHAR, BPCHAR, JSON, JSONB = 25, 1043, 1042, 114, 3802
INTEGER_OIDS = (INT2, INT4, INT8)
STRING_OIDS = (TEXT, VARCHAR, BPCHAR)
UUID = 2950
KEY_OIDS = (*INTEGER_OIDS, UUID, TEXT, VARCHAR)  # see key_type_problem
_INT_RANK = {INT2: 0, INT4: 1, INT8: 2}
_INT_DIGITS = {INT2: 5, INT4: 10, INT8: 19}  # decimal digits of the largest value
_FLOAT_MANTISSA_DIGITS = {FLOAT4: 6, FLOAT8: 15}
FIRST_USER_OID = 16384  # below: built-in types, the same oid in every database (FirstNormalObjectId)


class PreflightError(ConfigError):
    """The config does not match the databases; ``problems`` lists every mismatch, each with its path."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"the migration config does not match the databases ({len(self.problems)} problem"
                         f"{'' if len(self.problems) == 1 else 's'}; nothing was changed):\n{lines}")


@dataclass(frozen=True)
class Problem:
    path: str      # the config path, e.g. entities.listings.columns[2].new
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True)
class ColType:
    """A column's (or a result column's) type as the server reports it; domains resolved to the base."""

    oid: int
    typmod: int
    name: str          # format_type of the declared type, e.g. numeric(12,2), character varying(50)
    category: str      # pg_type.typcategory: N numeric, S string, E enum, D date/time, ...
    type_schema: str   # the declared type (a domain or enum keeps its own name), for casts
    type_ident: str

    @property
    def length(self) -> int | None:
        """varchar(n)/char(n): n; None when unbounded."""
        return self.typmod - 4 if self.oid in (VARCHAR, BPCHAR) and self.typmod >= 4 else None

    @property
    def numeric(self) -> tuple[int, int] | None:
        """numeric(p,s): (p, s); None when unconstrained."""
        if self.oid != NUMERIC or self.typmod < 4:
            return None
        mod = self.typmod - 4
        return (mod >> 16) & 0xFFFF, mod & 0xFFFF


# --- the rules (pure) -------------------------------------------------------------------------
def key_type_problem(t: ColType) -> str | None:
    """Why a key of this type cannot be paged / batched / split by the engine (None: supported).

    The one place that says which key types the whole engine supports: a single column of an
    integer type, uuid, text or varchar (domains count as their base type). The backfill and phase 1
    also handle char (``migration_engine.keys``), the diff does not (blank-padded comparisons), so a
    key that every phase must handle is refused here.
    """
    if t.oid in KEY_OIDS:
        return None
    return (f"is {t.name}; the engine supports single-column keys of smallint, integer, bigint, uuid, text or "
            f"varchar (docs/config-reference.md, 'Key types')")


def _int_fits_numeric(src: ColType, dst: ColType) -> bool:
    ps = dst.numeric
    return ps is None or ps[0] - ps[1] >= _INT_DIGITS[src.oid]


def conversion_problem(src: ColType, dst: ColType, cast_context: str | None) -> str | None:
    """Why values of ``src`` may fail or change on their way into a ``dst`` column (None: safe).

    ``cast_context`` is pg_cast.castcontext for src -> dst (``i`` implicit, ``a`` assignment, ``e``
    explicit, None no cast). The values travel as COPY text, so what matters is that every text
    ``src`` can print parses into ``dst`` without rounding, truncating or overflowing.
    """
    if dst.oid in STRING_OIDS:
        n = dst.length
        if n is None:
            return None  # text / unbounded varchar takes any value's text
        if src.oid in STRING_OIDS and src.length is not None and src.length <= n:
            return None
        if src.oid in INTEGER_OIDS and _INT_DIGITS[src.oid] + 1 <= n:
            return None
        return f"{src.name} values may be longer than {dst.name} allows (they would fail)"
    if src.oid == dst.oid:
        if src.oid == NUMERIC and dst.numeric is not None:
            s, d = src.numeric, dst.numeric
            if s is None or d[1] < s[1] or d[0] - d[1] < s[0] - s[1]:
                return f"{src.name} values may be rounded or overflow in {dst.name}"
        return None
    if src.oid in INTEGER_OIDS and dst.oid in INTEGER_OIDS:
        if _INT_RANK[dst.oid] >= _INT_RANK[src.oid]:
            return None
        return f"{src.name} values may overflow {dst.name} (they would fail)"
    if src.oid in INTEGER_OIDS and dst.oid == NUMERIC:
        return None if _int_fits_numeric(src, dst) else f"{src.name} values may overflow {dst.name}"
    if {src.oid, dst.oid} <= {JSON, JSONB}:
        return None
    if dst.oid in _FLOAT_MANTISSA_DIGITS:
        src_digits = _INT_DIGITS.get(src.oid) or (_FLOAT_MANTISSA_DIGITS.get(src.oid) if src.oid != dst.oid else 0)
        if src.oid == NUMERIC or (src_digits and src_digits > _FLOAT_MANTISSA_DIGITS[dst.oid]):
            return f"{src.name} values may be rounded in {dst.name} (floating point)"
    if cast_context == "i":
        return None
    how = {"a": "only on assignment, which can fail or round", "e": "only explicitly",
           None: "not at all"}.get(cast_context, "not implicitly")
    return (f"Postgres converts {src.name} to {dst.name} {how}: values may fail or change; add a transform "
            f"(e.g. a cast or scale) or change the column's type")


# --- catalog reads ----------------------------------------------------------------------------
class Catalog:
    """Cached catalog reads on one database, in one read-only transaction."""

    def __init__(self, conn, label: str):
        self.conn = conn
        self.label = label  # "legacy database (breederhq_db)"
        self._columns: dict[str, dict[str, ColType] | None] = {}
        self._unique: dict[str, list[tuple[bool, tuple[str, ...]]]] = {}
        self._casts: dict[tuple[int, int], str | None] = {}

    def _fetch(self, name: str, params: dict[str, Any], idents: dict[str, Any] | None = None) -> list[tuple]:
        with self.conn.cursor() as cur:
            sqlfiles.run(cur, name, idents or {}, params)
            return cur.fetchall()

    def columns(self, table: TableRef) -> dict[str, ColType] | None:
        """Column name -> type; None when the table (or view) does not exist."""
        key = str(table)
        if key not in self._columns:
            ids = {"schema_name": table.schema_name, "table_name": table.table}
            if not self._fetch("preflight/relation_kind.sql", ids):
                self._columns[key] = None
            else:
                self._columns[key] = {r[0]: ColType(*r[1:]) for r in self._fetch("preflight/table_columns.sql", ids)}
        return self._columns[key]

    def unique_keys(self, table: TableRef) -> list[tuple[bool, tuple[str, ...]]]:
        """(is primary key, columns) of each usable unique index."""
        key = str(table)
        if key not in self._unique:
            rows = self._fetch("preflight/unique_keys.sql", {"schema_name": table.schema_name,
                                                             "table_name": table.table})
            self._unique[key] = [(bool(pk), tuple(cols)) for pk, cols in rows]
        return self._unique[key]

    def is_unique(self, table: TableRef, column: str) -> bool:
        return any(cols == (column,) for _pk, cols in self.unique_keys(table))

    def primary_key(self, table: TableRef) -> tuple[str, ...] | None:
        return next((cols for pk, cols in self.unique_keys(table) if pk), None)

    def cast_context(self, src: ColType, dst: ColType) -> str | None:
        k = (src.oid, dst.oid)
        if k not in self._casts:
            rows = self._fetch("preflight/cast_context.sql", {"source_oid": src.oid, "target_oid": dst.oid})
            self._casts[k] = rows[0][0] if rows else None
        return self._casts[k]

    def enum_labels(self, t: ColType) -> list[str]:
        return [r[0] for r in self._fetch("preflight/enum_labels.sql", {"type_oid": t.oid})]

    def has_rows(self, table: TableRef) -> bool:
        return bool(self._fetch("preflight/has_rows.sql", {},
                                {"schema_name": table.schema_name, "table_name": table.table})[0][0])

    def value_error(self, value: str, t: ColType) -> str | None:
        """Why ``value`` does not parse as ``t`` (None: it does); tried inside a savepoint."""
        if t.length is not None and len(value) > t.length:
            return f"is longer than {t.name} allows"
        with self.conn.cursor() as cur:
            cur.execute("SAVEPOINT preflight_value")
            try:
                sqlfiles.run(cur, "preflight/cast_value.sql", {"type_schema": t.type_schema,
                                                               "type_name": t.type_ident}, {"value": value})
            except psycopg2.Error as exc:
                cur.execute("ROLLBACK TO SAVEPOINT preflight_value")
                return f"is not a valid {t.name} ({(exc.pgerror or str(exc)).strip().splitlines()[0]})"
            cur.execute("RELEASE SAVEPOINT preflight_value")
        return None

    def probe(self, es: EntitySql) -> tuple[list[ColType] | None, str | None]:
        """The result type of each mapping expression (``LIMIT 0``), or the server's error."""
        e = es.entity
        tpl = sqlfiles.load("preflight/probe_mapping.sql")
        composed = tpl.compose(select_list=sql.SQL(", ").join(es.select_items(probe=True)),
                               old_schema=e.old_table.schema_name, old_table=e.old_table.table)
        with self.conn.cursor() as cur:
            cur.execute("SAVEPOINT preflight_probe")
            try:
                cur.execute(composed, es.map_params())
            except psycopg2.Error as exc:
                cur.execute("ROLLBACK TO SAVEPOINT preflight_probe")
                return None, (exc.pgerror or str(exc)).strip().splitlines()[0]
            desc = list(cur.description)
            cur.execute("RELEASE SAVEPOINT preflight_probe")
        return [self._result_type(d) for d in desc], None

    def _result_type(self, d) -> ColType:
        oid, typmod = d.type_code, -1
        if d.table_oid and d.table_column:  # a plain column: its exact declared type
            rows = self._fetch("preflight/column_type_by_number.sql",
                               {"table_oid": d.table_oid, "column_number": d.table_column})
            if rows:
                oid, typmod = rows[0]
        elif oid == NUMERIC and d.precision is not None and d.scale is not None and 0 < d.precision <= 1000 \
                and 0 <= d.scale <= d.precision:  # an unconstrained numeric reports 65535 (no typmod)
            typmod = ((d.precision << 16) | d.scale) + 4
        elif oid in (VARCHAR, BPCHAR) and d.internal_size and d.internal_size > 0:
            typmod = d.internal_size + 4
        return ColType(*self._fetch("preflight/type_info.sql", {"type_oid": oid, "typmod": typmod})[0])


# --- the checks -------------------------------------------------------------------------------
@dataclass
class _Run:
    cfg: MigrationConfig
    cats: dict[str, Catalog]            # side ("legacy" / "new") -> its catalog
    problems: list[Problem] = field(default_factory=list)
    checked: int = 0

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def planned(self, side: str) -> dict[str, dict[str, str]]:
        """Columns phase 1 adds (table -> column -> type): they exist from phase 1 on, so checks of
        later phases may name them before phase 1 ran. Phase 1 runs on the legacy database."""
        if self.cfg.conn_id(side) != self.cfg.connections.legacy:
            return {}
        out: dict[str, dict[str, str]] = {}
        for a in self.cfg.schema_changes.add_columns:
            out.setdefault(str(a.table), {})[a.column] = a.type
        return out

    def table(self, side: str, table: TableRef, path: str) -> dict[str, ColType] | None:
        """The table's columns, or None after reporting it missing at ``path``."""
        self.checked += 1
        cols = self.cats[side].columns(table)
        if cols is None:
            self.add(path, f"table {table} does not exist in the {self.cats[side].label}")
        return cols

    def column(self, side: str, table: TableRef, cols: dict[str, ColType] | None, column: str, path: str,
               what: str = "column", *, planned_ok: bool = True) -> ColType | None:
        """The column's type (None if missing - reported - or only planned by phase 1)."""
        if cols is None:
            return None  # the missing table is reported once
        self.checked += 1
        if column in cols:
            return cols[column]
        if planned_ok and column in self.planned(side).get(str(table), {}):
            return None
        self.add(path, f"{what} {table}.{column} does not exist in the {self.cats[side].label}")
        return None

    def convert(self, src: ColType, dst: ColType, path: str, src_label: str, dst_label: str,
                src_cat: Catalog, dst_cat: Catalog) -> None:
        """Report at ``path`` when values of ``src`` (read in ``src_cat``'s database) may fail or change
        in a ``dst`` column (``dst_cat``'s). Types defined in a database (enums, extension types) have
        their own oids there, so across two databases an enum is checked label by label and other such
        types by name."""
        problem = None
        if src.category == "E":
            bad = [v for v in src_cat.enum_labels(src) if dst_cat.value_error(v, dst)]
            if bad:
                problem = f"the label(s) {bad} are not valid {dst.name} values"
        elif src_cat is not dst_cat and FIRST_USER_OID <= max(src.oid, dst.oid) and \
                not (dst.oid in STRING_OIDS and dst.length is None):
            if src.name != dst.name:
                problem = ("types defined in each database (not built in) and named differently: the "
                           "preflight cannot tell that values convert; add a transform or use the same type")
        else:
            problem = conversion_problem(src, dst, dst_cat.cast_context(src, dst))
        if problem:
            self.add(path, f"{src_label} ({src.name}) into {dst_label} ({dst.name}): {problem}")


def _entity(run: _Run, name: str, e: Entity) -> None:
    p = f"entities.{name}"
    legacy, new = run.cats["legacy"], run.cats["new"]
    old_cols = run.table("legacy", e.old_table, f"{p}.old_table")
    new_cols = run.table("new", e.new_table, f"{p}.new_table")

    key_t = run.column("legacy", e.old_table, old_cols, e.key, f"{p}.key", "key column", planned_ok=False)
    if key_t is not None:
        why = key_type_problem(key_t)
        if why:
            run.add(f"{p}.key", f"key {e.old_table}.{e.key} {why}")
        if not legacy.is_unique(e.old_table, e.key):
            run.add(f"{p}.key", f"key {e.old_table}.{e.key} has no primary key or unique index of its own: the "
                                "backfill pages and the diff compares rows by it, so it must identify one row")
    new_key_t = run.column("new", e.new_table, new_cols, e.new_key, f"{p}.new_key", "new key column",
                           planned_ok=False)
    if new_key_t is not None and not new.is_unique(e.new_table, e.new_key):
        run.add(f"{p}.new_key", f"new key {e.new_table}.{e.new_key} has no primary key or unique index of its own "
                                "(the rollback sync walks the new table by it)")
    lid_t = run.column("new", e.new_table, new_cols, e.legacy_id_column, f"{p}.legacy_id_column",
                       "legacy id column", planned_ok=False)
    if lid_t is not None:
        if not new.is_unique(e.new_table, e.legacy_id_column):
            run.add(f"{p}.legacy_id_column",
                    f"{e.new_table}.{e.legacy_id_column} has no UNIQUE constraint (or unique index) on it alone: the "
                    f"backfill's and dual-write's INSERT ... ON CONFLICT ({e.legacy_id_column}) needs one "
                    f"(ALTER TABLE {e.new_table} ADD CONSTRAINT ... UNIQUE ({e.legacy_id_column}))")
        if key_t is not None:
            run.convert(key_t, lid_t, f"{p}.legacy_id_column", f"key {e.old_table}.{e.key}",
                        f"{e.new_table}.{e.legacy_id_column}", legacy, new)
    if e.scope is not None:
        run.column("legacy", e.old_table, old_cols, e.scope.column, f"{p}.scope.column", "scope column")
    mark = e.rollback_deletes
    if mark.action == "mark" and mark.column is not None:
        mark_t = run.column("legacy", e.old_table, old_cols, mark.column, f"{p}.rollback_deletes.column")
        if mark_t is not None and mark.value is not None:
            err = legacy.value_error(mark.value, mark_t)
            if err:
                run.add(f"{p}.rollback_deletes.value", f"{mark.value!r} {err} ({e.old_table}.{mark.column})")

    old_ok = old_cols is not None
    for i, c in enumerate(e.columns):
        cp = f"{p}.columns[{i}]"
        if run.column("legacy", e.old_table, old_cols, c.old, f"{cp}.old", "old column", planned_ok=False) is None:
            old_ok = False
        run.column("new", e.new_table, new_cols, c.new, f"{cp}.new", "new column", planned_ok=False)
        if c.lookup is not None:
            _lookup(run, e, i, cp)
    if run.cfg.backfill.version_column is not None and run.cfg.backfill.version_column not in \
            [c.new for c in e.columns]:
        run.add("backfill.version_column",
                f"{run.cfg.backfill.version_column!r} is not a mapped column of entity {name} (mapped: "
                f"{[c.new for c in e.columns]}); map it, or set backfill.version_column: null")
    if old_ok and new_cols is not None:
        _entity_types(run, name, e, new_cols)


def _lookup(run: _Run, e: Entity, i: int, cp: str) -> None:
    lk = e.columns[i].lookup
    cols = run.table("new", lk.table, f"{cp}.lookup.table")
    match_t = run.column("new", lk.table, cols, lk.match, f"{cp}.lookup.match", "lookup match column",
                         planned_ok=False)
    run.column("new", lk.table, cols, lk.value, f"{cp}.lookup.value", "lookup value column", planned_ok=False)
    if cols is None:
        return
    if not run.cats["new"].has_rows(lk.table):
        run.add(f"{cp}.lookup.table", f"lookup table {lk.table} is empty in the {run.cats['new'].label}: every "
                                      f"row would get {e.columns[i].new} NULL")
    if match_t is not None and not run.cats["new"].is_unique(lk.table, lk.match):
        run.add(f"{cp}.lookup.match", f"{lk.table}.{lk.match} has no unique index: an old value matching two "
                                      "lookup rows would write its row twice")


def _entity_types(run: _Run, name: str, e: Entity, new_cols: dict[str, ColType]) -> None:
    legacy, new = run.cats["legacy"], run.cats["new"]
    es = EntitySql(name, e, run.cfg.control_schema)
    outs, err = legacy.probe(es)
    p = f"entities.{name}"
    if outs is None:
        run.add(f"{p}.columns", f"the mapping's select on {e.old_table} fails in the {legacy.label}: {err}")
        return
    for i, (c, out) in enumerate(zip(e.columns, outs, strict=True)):
        cp = f"{p}.columns[{i}]"
        dst = new_cols.get(c.new)
        if dst is None:
            continue  # reported as missing
        src_label = f"{e.old_table}.{c.old}"
        if c.map is not None:
            for k, v in c.map.items():
                why = new.value_error(v, dst)
                if why:
                    run.add(f"{cp}.map.{k}", f"{v!r} (the value {k!r} maps to) {why} ({e.new_table}.{c.new})")
            continue
        if c.lookup is not None:
            lk = c.lookup
            lk_cols = new.columns(lk.table) or {}
            if lk.match in lk_cols:
                run.convert(out, lk_cols[lk.match], f"{cp}.lookup.match", src_label, f"{lk.table}.{lk.match}",
                            legacy, new)
            if lk.value in lk_cols:
                run.convert(lk_cols[lk.value], dst, f"{cp}.lookup.value", f"{lk.table}.{lk.value}",
                            f"{e.new_table}.{c.new}", new, new)
            continue
        if c.scale is not None and c.cast is None and out.oid == NUMERIC and dst.oid in INTEGER_OIDS:
            # scale always rounds to a whole number (its rounding says how), so the COPY text is an
            # integer; only a value beyond the integer's range could fail, and that batch then fails
            # naming the row (nothing is half-written)
            continue
        run.convert(out, dst, f"{cp}.new", src_label, f"{e.new_table}.{c.new}", legacy, new)


def comparable(a: ColType, b: ColType) -> bool:
    """Whether values read from a column of type ``a`` can be looked up in a column of type ``b`` (the
    reference check sends one side's values as an array to the other database)."""
    if a.oid in INTEGER_OIDS and b.oid in INTEGER_OIDS or a.oid in STRING_OIDS and b.oid in STRING_OIDS:
        return True
    if a.oid < FIRST_USER_OID and b.oid < FIRST_USER_OID:
        return a.oid == b.oid
    return a.name == b.name


def _references(run: _Run) -> None:
    for i, r in enumerate(run.cfg.references):
        types = {}
        for end, side in (("from", r.from_), ("to", r.to)):
            path = f"references[{i}].{end}"
            cols = run.table(side.db, side.table, f"{path}.table")
            types[end] = run.column(side.db, side.table, cols, side.column, f"{path}.column")
        a, b = types["from"], types["to"]
        if a is not None and b is not None and not comparable(a, b):
            run.add(f"references[{i}].to.column",
                    f"{r.from_.table}.{r.from_.column} ({a.name}) cannot be compared with {r.to.table}.{r.to.column} "
                    f"({b.name}): use columns of the same type")


def _value_checks(run: _Run) -> None:
    for i, v in enumerate(run.cfg.value_checks):
        cols = run.table(v.db, v.table, f"value_checks[{i}].table")
        run.column(v.db, v.table, cols, v.column, f"value_checks[{i}].column")


def _count_parity(run: _Run) -> None:
    for i, c in enumerate(run.cfg.consistency.count_parity):
        for side in ("legacy", "new"):
            cs = getattr(c, side)
            path = f"consistency.count_parity[{i}].{side}"
            cols = run.table(side, cs.table, f"{path}.table")
            if cs.where is not None:
                run.column(side, cs.table, cols, cs.where.column, f"{path}.where.column")


def _schema_changes(run: _Run) -> None:
    sc = run.cfg.schema_changes
    legacy = run.cats["legacy"]
    for i, a in enumerate(sc.add_columns):
        cols = run.table("legacy", a.table, f"schema_changes.add_columns[{i}].table")
        if cols is not None and a.column in cols and cols[a.column].name != canonical_type(a.type):
            run.add(f"schema_changes.add_columns[{i}].type",
                    f"{a.table}.{a.column} already exists as {cols[a.column].name}, the config adds it as "
                    f"{canonical_type(a.type)}")
    for i, x in enumerate(sc.indexes):
        path = f"schema_changes.indexes[{i}]"
        cols = run.table("legacy", x.table, f"{path}.table")
        for j, col in enumerate(x.columns):
            run.column("legacy", x.table, cols, col, f"{path}.columns[{j}]")
        if x.where is not None:
            run.column("legacy", x.table, cols, x.where.column, f"{path}.where.column")
    for i, r in enumerate(sc.required):
        path = f"schema_changes.required[{i}]"
        cols = run.table("legacy", r.table, f"{path}.table")
        col_t = run.column("legacy", r.table, cols, r.column, f"{path}.column")
        if col_t is not None:
            err = legacy.value_error(str(r.value).lower() if isinstance(r.value, bool) else str(r.value), col_t)
            if err:
                run.add(f"{path}.value", f"{r.value!r} {err} ({r.table}.{r.column})")
        if cols is None:
            continue
        if r.key is not None:
            key_t = run.column("legacy", r.table, cols, r.key, f"{path}.key", "batch key column", planned_ok=False)
            key_label = f"batch key {r.table}.{r.key}"
        else:
            pk = legacy.primary_key(r.table)
            if pk is None or len(pk) != 1:
                run.add(f"{path}.key", f"{r.table} has no one-column primary key to batch the update by "
                                       f"({'none' if pk is None else 'it has ' + ', '.join(pk)}); name a unique "
                                       "column as key")
                continue
            key_t, key_label = cols[pk[0]], f"primary key {r.table}.{pk[0]}"
        if key_t is None:
            continue
        why = key_type_problem(key_t)
        if why:
            run.add(f"{path}.key", f"{key_label} {why}")
        if r.key is not None and not legacy.is_unique(r.table, r.key):
            run.add(f"{path}.key", f"{key_label} has no unique index of its own: batches by it could miss rows")
    for i, ck in enumerate(sc.checks):
        cols = run.table("legacy", ck.table, f"schema_changes.checks[{i}].table")
        run.column("legacy", ck.table, cols, ck.column, f"schema_changes.checks[{i}].column")


def _cleanup(run: _Run) -> None:
    c = run.cfg.cleanup
    legacy = run.cats["legacy"]

    def present(table: TableRef, path: str) -> None:
        archived = table.with_table((table.table + c.archive_suffix)[:63])
        run.checked += 1
        if legacy.columns(table) is None and legacy.columns(archived) is None:
            run.add(path, f"table {table} does not exist in the {legacy.label} (nor its archive {archived})")

    for i, t in enumerate(c.archive_tables):
        present(t, f"cleanup.archive_tables[{i}]")
    for i, d in enumerate(c.drop_columns):
        present(d.table, f"cleanup.drop_columns[{i}].table")


_PARTS: dict[str, Callable[[_Run], None]] = {
    REFERENCES: _references, VALUE_CHECKS: _value_checks, COUNT_PARITY: _count_parity,
    SCHEMA_CHANGES: _schema_changes, CLEANUP: _cleanup,
}


def check_connections(cfg: MigrationConfig, legacy, new, *, parts: Iterable[str] = ALL_PARTS,
                      entities: Iterable[str] | None = None) -> tuple[list[Problem], int]:
    """Every problem of ``parts`` (and of ``entities``, default all) on open connections; reads only."""
    parts = tuple(parts)
    unknown = sorted(set(parts) - set(ALL_PARTS))
    if unknown:
        raise ValueError(f"unknown preflight part(s) {unknown}; known: {list(ALL_PARTS)}")
    cats = {"legacy": Catalog(legacy, f"legacy database ({cfg.connections.legacy})")}
    cats["new"] = cats["legacy"] if new is legacy else Catalog(new, f"new database ({cfg.new_conn_id})")
    run = _Run(cfg, cats)
    if ENTITIES in parts:
        for name in (cfg.entities if entities is None else entities):
            if name not in cfg.entities:
                raise ConfigError(f"entity {name!r} is not in the migration config; known: {sorted(cfg.entities)}")
            _entity(run, name, cfg.entities[name])
    for part in parts:
        if part in _PARTS:
            _PARTS[part](run)
    return run.problems, run.checked


def _read_only(conn) -> None:
    conn.rollback()
    conn.set_session(readonly=True)


def run_preflight(cfg: MigrationConfig, *, parts: Iterable[str] = ALL_PARTS, entities: Iterable[str] | None = None,
                  connect: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Open both databases read-only, check, and raise :class:`PreflightError` listing every problem.

    ``connect(side)`` opens "legacy" / "new" (default: the config's connection ids; with
    ``same_database`` one connection serves both). Returns a summary (for the task's XCom and log)
    when everything matches.
    """
    parts = tuple(parts)
    entities = None if entities is None else list(entities)
    if connect is None:
        def connect(side: str):
            return db.connect(cfg.conn_id(side), application_name=PREFLIGHT_APP)
    legacy = connect("legacy")
    new = None
    try:
        _read_only(legacy)
        if cfg.new_conn_id == cfg.connections.legacy:
            new = legacy
        else:
            new = connect("new")
            _read_only(new)
        problems, checked = check_connections(cfg, legacy, new, parts=parts, entities=entities)
    finally:
        for conn in {id(c): c for c in (legacy, new) if c is not None}.values():
            conn.rollback()
            conn.close()
    if problems:
        raise PreflightError(problems)
    log.info("preflight: %d names and types checked (%s): the config matches the databases", checked,
             ", ".join(parts))
    return {"parts": list(parts), "entities": entities, "checked": checked, "problems": []}


def check_or_raise(cfg: MigrationConfig, legacy, new, *, parts: Iterable[str],
                   entities: Iterable[str] | None = None) -> int:
    """:func:`check_connections` on the caller's idle connections, which are left as found (the checks
    read in a transaction rolled back afterwards); raises :class:`PreflightError`. Returns the count
    of names checked."""
    conns = {id(legacy): legacy, id(new): new}.values()
    for conn in conns:
        if conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            raise ValueError("preflight.check_or_raise needs idle connections (it rolls its reads back)")
    autocommit = {id(c): c.autocommit for c in conns}
    try:
        for conn in conns:
            conn.autocommit = False
        problems, checked = check_connections(cfg, legacy, new, parts=parts, entities=entities)
    finally:
        for conn in conns:
            conn.rollback()
            conn.autocommit = autocommit[id(conn)]
    if problems:
        raise PreflightError(problems)
    return checked
