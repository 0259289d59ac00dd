"""Turn an entity of the config into the two sides of a diff, after checking the catalogs.

The old side computes the MAPPED values (value maps applied in SQL, scope filter); the new side
selects by the legacy-id column. A looked-up column (``provider_id`` from ``tenant_id`` through
``marketplace.providers``) is compared by translating the NEW value back to the old one inside the
new database (``expr/lookup_source.sql``, a hash join): both sides then hash comparable values in
their own server, nothing is shipped, and no lookup table is held in memory. That needs a one-to-one lookup
(``match`` and ``value`` unique), which the preflight checks; a new row whose provider does not
exist, or whose tenant has no provider, is reported as changed in that column.

Preflight errors name the database, the table and the column, and say when a column is one that
phase 1 adds (``schema_changes.add_columns``), because that is the usual reason it is missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg2
from psycopg2 import sql

from migration_engine import sqlfiles, transform_settings, transforms
from migration_engine.config import Entity, MigrationConfig, TableRef
from migration_engine.consistency import keys
from migration_engine.consistency.keys import KeyType
from migration_engine.consistency.results import ConsistencyError

_FAMILIES = {
    "int2": "integer", "int4": "integer", "int8": "integer",
    "float4": "float", "float8": "float", "numeric": "numeric",
    "text": "text", "varchar": "text", "bpchar": "text", "name": "text", "citext": "text",
    "bool": "boolean", "timestamptz": "timestamptz", "timestamp": "timestamp", "date": "date",
    "uuid": "uuid", "json": "json", "jsonb": "json",
}


def family(udt: str) -> str:
    """Types that render identically in JSON belong to one family (int4 and int8, text and varchar)."""
    return _FAMILIES.get(udt, udt)


def ident(table: TableRef) -> tuple[str, str]:
    return (table.schema_name, table.table)


def table_columns(conn, table: TableRef) -> dict[str, str]:
    """{column: udt_name}; empty when the table does not exist."""
    with conn.cursor() as cur:
        sqlfiles.run(cur, "consistency/table_columns.sql",
                     params={"schema_name": table.schema_name, "table_name": table.table})
        return {name: udt for name, udt, _t in cur.fetchall()}


def primary_key(conn, table: TableRef) -> list[tuple[str, str]]:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "consistency/primary_key.sql",
                     params={"schema_name": table.schema_name, "table_name": table.table})
        return [(name, udt) for name, udt in cur.fetchall()]


def _probe(conn, e: Entity, expr: transforms.Expr, params: dict[str, Any]) -> str | None:
    """Can the legacy server compute this transformed value (``WHERE false``: planned, nothing read)?"""
    tpl = sqlfiles.load("common/probe_expression.sql")
    try:
        with conn.cursor() as cur:
            cur.execute(tpl.compose(value=expr.sql, table=ident(e.old_table), alias="t"), {**params, **expr.params})
    except psycopg2.Error as exc:
        return f"the legacy server refuses its transform: {(exc.diag.message_primary or str(exc)).strip()}"
    finally:
        conn.rollback()
    return None


def _phase1_hint(cfg: MigrationConfig, table: TableRef, column: str) -> str:
    for add in cfg.schema_changes.add_columns:
        if add.table == table and add.column == column:
            return " (phase 1 adds it: schema_changes.add_columns; run phase 1 first)"
    return ""


def where_is(cfg: MigrationConfig, side: str) -> str:
    return f"{side} database (connection {cfg.conn_id(side)})"


def require_columns(conn, cfg: MigrationConfig, side: str, table: TableRef, columns: list[str]) -> dict[str, str]:
    """The table's {column: udt}; raise naming every missing table/column."""
    cols = table_columns(conn, table)
    if not cols:
        raise ConsistencyError(f"{where_is(cfg, side)}: table {table} does not exist")
    missing = [c for c in dict.fromkeys(columns) if c not in cols]
    if missing:
        raise ConsistencyError("; ".join(
            f"{where_is(cfg, side)}: column {table}.{c} does not exist{_phase1_hint(cfg, table, c)}"
            for c in missing))
    return cols


def single_key(conn, cfg: MigrationConfig, side: str, table: TableRef, what: str) -> tuple[str, KeyType]:
    """The single primary-key column of a table and its type (chunks are primary-key ranges).

    Any supported key type (consistency/keys.py); a composite or missing primary key, or a key
    of another type, is refused naming the table, the columns and their types."""
    pk = primary_key(conn, table)
    if len(pk) != 1:
        raise ConsistencyError(
            f"{what}: {where_is(cfg, side)}: table {table} needs a single-column primary key to be checked in "
            f"key-range chunks (found {', '.join(f'{n} {u}' for n, u in pk) if pk else 'none'})")
    return pk[0][0], keys.require_key(conn, what, where_is(cfg, side), table, pk[0][0])


def _id_list(alias: str, names: list[str]) -> sql.Composed:
    return sql.SQL(", ").join([sql.Identifier(alias, n) for n in names])


def fragment(name: str, **identifiers: Any) -> sql.Composed:
    """A fragment file as a composable piece of SQL (comments dropped, trailing ``;`` removed).

    ``SELECT <expression>;`` gives the expression; ``(SELECT ...);`` gives the parenthesised
    derived table. Fragments are complete statements so squawk can lint them like any SQL file.
    """
    tpl = sqlfiles.load(name)
    body = "\n".join(ln for ln in tpl.text.splitlines() if not ln.strip().startswith("--")).strip()
    if not body.endswith(";"):
        raise ValueError(f"{name}: a fragment must end with ';'")
    body = body[:-1].strip()
    if body.upper().startswith("SELECT "):
        body = body[len("SELECT "):].strip()
    elif not body.startswith("("):
        raise ValueError(f"{name}: a fragment must be 'SELECT <expression>;' or '(SELECT ...);'")
    missing = tpl.identifiers - identifiers.keys()
    if missing:
        raise KeyError(f"{name}: identifiers not supplied: {sorted(missing)}")
    rendered = {k: v if isinstance(v, sql.Composable) else
                (sql.Identifier(*v) if isinstance(v, (tuple, list)) else sql.Identifier(str(v)))
                for k, v in identifiers.items() if k in tpl.identifiers}
    return sql.SQL(body).format(**rendered)


@dataclass(frozen=True)
class Scope:
    column: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class EntityPlan:
    """Everything the diff queries need for one entity; ``columns`` is the digest order."""

    name: str
    entity: Entity
    columns: tuple[str, ...]               # reported (new) column names, config order
    old_values: tuple[sql.Composable, ...]  # one expression per column, old side (mapped)
    new_values: tuple[sql.Composable, ...]  # one expression per column, new side
    new_source: sql.Composable             # the new table, wrapped once per looked-up column
    lookups: dict[str, str]                # new column -> "tenant_id via marketplace.providers"
    value_maps: dict[str, str]             # bound params of the value-map fragments
    old_scope: Scope | None
    new_scope: Scope | None
    notes: tuple[str, ...] = ()
    key_type: KeyType = KeyType("int8", "bigint")  # the old key's (the legacy-id column is checked alike)
    version_columns: tuple[str, str] | None = None  # (old, new) timestamptz columns the re-check dates rows by

    def old_identifiers(self) -> dict[str, Any]:
        e = self.entity
        return {"table": ident(e.old_table), "key": e.key,
                "scope_column": self.old_scope.column if self.old_scope else e.key,
                "values": sql.SQL(", ").join(self.old_values)}

    def new_identifiers(self) -> dict[str, Any]:
        e = self.entity
        return {"source": self.new_source, "legacy_id": e.legacy_id_column, "new_key": e.new_key,
                "scope_column": self.new_scope.column if self.new_scope else e.legacy_id_column,
                "values": sql.SQL(", ").join(self.new_values)}

    def new_table_identifiers(self) -> dict[str, Any]:
        """For queries on the plain new table (no lookups needed)."""
        ids = self.new_identifiers()
        return {**ids, "table": ident(self.entity.new_table)}

    def old_params(self) -> dict[str, Any]:
        """Bound values of the old-side queries, the fragments' value maps included."""
        return {"scoped": self.old_scope is not None,
                "scope_values": list(self.old_scope.values) if self.old_scope else [], **self.value_maps}

    def new_params(self) -> dict[str, Any]:
        return {"scoped": self.new_scope is not None,
                "scope_values": list(self.new_scope.values) if self.new_scope else []}


def _new_scope(entity: Entity) -> tuple[Scope | None, str | None]:
    """The seed's scope (old status = 'ACTIVE') expressed on the new side (status = 'active')."""
    if entity.scope is None:
        return None, None
    for cm in entity.columns:
        if cm.old != entity.scope.column:
            continue
        if transforms.has_transform(cm):
            break
        if cm.lookup is not None:
            break
        if cm.map is None:
            return Scope(cm.new, tuple(entity.scope.values)), None
        unmapped = [v for v in entity.scope.values if v not in cm.map]
        if unmapped:
            raise ConsistencyError(
                f"entity scope values {unmapped} of column {entity.scope.column!r} have no entry in "
                f"that column's value map; add them to the map")
        return Scope(cm.new, tuple(cm.map[v] for v in entity.scope.values)), None
    return None, (f"the scope column {entity.old_table}.{entity.scope.column} is not mapped to a new column, "
                  "so every new row with a legacy id is compared (the new side is not scoped)")


def build_entity_plan(cfg: MigrationConfig, name: str, old_conn, new_conn) -> EntityPlan:
    """Check both catalogs and build the plan; raises ConsistencyError naming what is wrong."""
    if name not in cfg.entities:
        raise ConsistencyError(f"unknown entity {name!r}; the config has {sorted(cfg.entities)}")
    e = cfg.entities[name]
    old_needed = [e.key] + [s for c in e.columns for s in transform_settings.sources(c)] + (
        [e.scope.column] if e.scope else [])
    new_needed = [e.new_key, e.legacy_id_column] + [c.new for c in e.columns]
    old_cols = require_columns(old_conn, cfg, "legacy", e.old_table, old_needed)
    new_cols = require_columns(new_conn, cfg, "new", e.new_table, new_needed)
    what = f"entity {name!r}"
    old_kt = keys.require_key(old_conn, what, where_is(cfg, "legacy"), e.old_table, e.key)
    new_kt = keys.require_key(new_conn, what, where_is(cfg, "new"), e.new_table, e.legacy_id_column)
    keys.require_same_order(what, ("old", e.old_table, e.key, old_kt),
                            ("legacy-id", e.new_table, e.legacy_id_column, new_kt))

    columns: list[str] = []
    old_values: list[sql.Composable] = []
    new_values: list[sql.Composable] = []
    source: sql.Composable = sql.Identifier(*ident(e.new_table))
    lookups: dict[str, str] = {}
    maps: dict[str, str] = {}  # placeholder -> the value map as JSON (bound, not inlined)
    problems = []
    new_types = transforms.column_types(new_conn, e.new_table)
    for i, cm in enumerate(e.columns):
        columns.append(cm.new)
        if cm.lookup is None and transforms.has_transform(cm):
            # The transform's value (map first, if any), cast to the new column's type: both sides
            # then render equal values identically. A fraction under rounding: error is refused, naming the column.
            base = None
            if cm.map is not None:
                placeholder = f"zdm_value_map_{len(maps)}"
                maps[placeholder] = json.dumps(cm.map, sort_keys=True)
                base = fragment("consistency/expr/value_map.sql", column=cm.old, value_map=sql.Placeholder(placeholder))
            expr = transforms.as_type(transforms.forward(cm, "t", f"zdm_t{i}", base=base),
                                      new_types[cm.new])
            maps.update(expr.params)
            problem = _probe(old_conn, e, expr, maps)
            if problem:
                problems.append(f"column {cm.new} (entities.{name}.columns[{i}]): {problem}")
            old_values.append(expr.sql)
            new_values.append(sql.Identifier("n", cm.new))
            continue
        if cm.map is not None:
            if family(new_cols[cm.new]) != "text":
                problems.append(f"{e.new_table}.{cm.new} is {new_cols[cm.new]} but its value map produces text")
            placeholder = f"zdm_value_map_{len(maps)}"
            maps[placeholder] = json.dumps(cm.map, sort_keys=True)
            old_values.append(fragment("consistency/expr/value_map.sql", column=cm.old,
                                       value_map=sql.Placeholder(placeholder)))
            new_values.append(sql.Identifier("n", cm.new))
            continue
        old_values.append(sql.Identifier("t", cm.old))
        if cm.lookup is not None:
            lk = cm.lookup
            lk_cols = require_columns(new_conn, cfg, "new", lk.table, [lk.match, lk.value])
            if family(lk_cols[lk.match]) != family(old_cols[cm.old]):
                problems.append(f"lookup {lk.table}.{lk.match} is {lk_cols[lk.match]} but "
                                f"{e.old_table}.{cm.old} is {old_cols[cm.old]}")
            if family(lk_cols[lk.value]) != family(new_cols[cm.new]):
                problems.append(f"lookup {lk.table}.{lk.value} is {lk_cols[lk.value]} but "
                                f"{e.new_table}.{cm.new} is {new_cols[cm.new]}")
            for col in (lk.match, lk.value):
                with new_conn.cursor() as cur:
                    sqlfiles.run(cur, "consistency/duplicate_value.sql", {"table": ident(lk.table), "column": col})
                    dup = cur.fetchone()
                if dup is not None:
                    problems.append(f"lookup {lk.table}.{col} is not unique (e.g. {dup[0]!r} repeats); the "
                                    f"lookup column {cm.new} cannot be compared one-to-one")
            as_column = f"zdm_lookup_{len(lookups)}_{cm.new}"[:63]
            source = fragment("consistency/expr/lookup_source.sql", source=source, match=lk.match,
                              as_column=as_column, lookup_table=ident(lk.table), column=cm.new, value=lk.value)
            new_values.append(sql.Identifier("n", as_column))
            lookups[cm.new] = f"{cm.old} via {lk.table}"
            continue
        if family(old_cols[cm.old]) != family(new_cols[cm.new]):
            problems.append(f"{e.old_table}.{cm.old} is {old_cols[cm.old]} but {e.new_table}.{cm.new} is "
                            f"{new_cols[cm.new]}: values of different types never compare equal")
        new_values.append(sql.Identifier("n", cm.new))
    if problems:
        raise ConsistencyError(f"entity {name!r} cannot be diffed: " + "; ".join(problems))
    new_scope, note = _new_scope(e)
    old_scope = Scope(e.scope.column, tuple(e.scope.values)) if e.scope else None
    version, version_note = version_columns(cfg, e, old_cols, new_cols)
    return EntityPlan(
        name=name, entity=e, columns=tuple(columns), old_values=tuple(old_values), new_values=tuple(new_values),
        new_source=source, lookups=lookups, value_maps=maps, old_scope=old_scope, new_scope=new_scope,
        notes=tuple(n for n in (note, version_note) if n), key_type=old_kt, version_columns=version,
    )


DATABLE = "timestamptz"  # a version column the server can date: an instant, compared with its own now()


def version_columns(cfg: MigrationConfig, e: Entity, old_cols: dict[str, str],
                    new_cols: dict[str, str]) -> tuple[tuple[str, str] | None, str | None]:
    """The (old, new) columns the re-check dates a differing row by, or None and a note saying why not.

    ``backfill.version_column`` (a new column every write bumps) through its mapping to the old column.
    Only ``timestamptz`` on both sides: a ``timestamp`` without time zone carries no zone, so its age is
    unknown (the application may write local time), and a counter has no age at all. Undated differences
    wait ``recheck_delay`` as they always did."""
    vc = cfg.backfill.version_column
    if vc is None:
        return None, None
    mapped = next((cm for cm in e.columns if cm.new == vc), None)
    if mapped is None or mapped.old is None:
        return None, (f"backfill.version_column {vc} is not mapped from an old column of this entity: differences "
                      f"are not dated, each waits recheck_delay")
    wrong = [f"{t}.{c} is {cols.get(c)}" for t, c, cols in ((e.old_table, mapped.old, old_cols),
                                                             (e.new_table, vc, new_cols)) if cols.get(c) != DATABLE]
    if wrong:
        return None, (f"version column not {DATABLE} ({'; '.join(wrong)}): differences are not dated, each waits "
                      f"recheck_delay")
    return (mapped.old, vc), None


def execute(cur, name: str, identifiers: dict[str, Any], params: dict[str, Any]) -> None:
    """Run a diff query file whose composed fragments add bound parameters of their own.

    ``sqlfiles.run`` passes only the file's own ``@params``; the fragments' placeholders
    (``zdm_value_map_N``) are passed through here as well.
    """
    tpl = sqlfiles.load(name)
    own = tpl.check_params(params)
    extra = {k: v for k, v in params.items() if k.startswith("zdm_")}
    cur.execute(tpl.compose(**identifiers), {**own, **extra})


def render(cur, name: str, identifiers: dict[str, Any], params: dict[str, Any]) -> str:
    """The statement :func:`execute` would send, as text (for dry-run plans), without comment lines."""
    tpl = sqlfiles.load(name)
    own = tpl.check_params(params)
    extra = {k: v for k, v in params.items() if k.startswith("zdm_")}
    text = cur.mogrify(tpl.compose(**identifiers), {**own, **extra}).decode()
    return "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("--")).strip()
