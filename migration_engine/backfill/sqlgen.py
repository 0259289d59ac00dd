"""The backfill's statements for one entity: include/sql/backfill skeletons + the column lists.

Why composition here: the statements live in include/sql/backfill, but their column lists depend
on the entity's mapping in the config (which columns, which are value-mapped, which are looked up).
Those lists are built from ``psycopg2.sql`` objects only - identifiers quoted by
``sql.Identifier``, values bound as named placeholders - exactly like the application simulator's
column lists. The only SQL text in this module are the three expression shapes a mapping can
have (a column, a mapped column, a looked-up column) and the join that resolves a lookup; value
transforms (cast, scale, default, concat, json_object, expression) are composed by
``migration_engine.transforms`` into the legacy SELECT, so the stage receives finished values.

Stage layout (legacy COPY output = stage table columns, in this order):
    legacy id | one column per config column (new name): plain -> the old value,
    map -> the mapped value (mapped in the legacy SELECT), lookup -> the old match value.

Direct layout (``lookup_params`` given: the direct COPY path): the same, except that a looked-up
column is resolved in the legacy SELECT from a map read from the lookup table (a miss stops the
read with an error, so the engine reads that batch the staged way): the COPY text is the target's
row, COPY'd straight into the target (or, into a range that holds rows, into the "resolved" stage,
typed like the target, and upserted without the lookup joins).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

from migration_engine import sqlfiles, transforms
from migration_engine.config import Entity
from migration_engine.keys import Key

STAGE_PREFIX = "backfill_stage_"

# The expression shapes of a mapping (the only SQL fragments outside include/sql; see docstring).
_MAPPED = ("CASE WHEN {col} IS NULL THEN NULL "
           "ELSE coalesce({map}::jsonb ->> {col}::text, {unmapped}({name}, {col}::text)) END")
_MAPPED_PROBE = "({map}::jsonb ->> {col}::text)"
_LOOKUP_JOIN = "LEFT JOIN {table} AS {alias} ON {alias_match} = {stage_col}"


@dataclass(frozen=True)
class EntitySql:
    name: str
    entity: Entity
    control_schema: str
    key: Key | None = None  # the key column's type (keys.read_key); the key-typed statements need it

    # -- shared pieces -------------------------------------------------------------------------
    @property
    def stage(self) -> str:
        return STAGE_PREFIX + self.name

    @property
    def resolved_stage(self) -> str:
        """The stage of direct-layout batches (every column typed like the target's)."""
        return STAGE_PREFIX + self.name + "_resolved"

    @property
    def scope_params(self) -> dict[str, Any]:
        scope = self.entity.scope
        return {"all_rows": scope is None, "scope_values": list(scope.values) if scope else []}

    @property
    def scope_column(self) -> str:
        return self.entity.scope.column if self.entity.scope else self.entity.key

    def _key_type(self) -> dict[str, Any]:
        """``"{key_type}"``: the type bounds and key arrays are cast to (only once the key was read)."""
        return {"key_type": self.key.cast} if self.key is not None else {}

    def old_ids(self) -> dict[str, Any]:
        e = self.entity
        return {"old_schema": e.old_table.schema_name, "old_table": e.old_table.table, "key": e.key,
                "scope_column": self.scope_column, **self._key_type()}

    def new_ids(self) -> dict[str, Any]:
        e = self.entity
        return {"new_schema": e.new_table.schema_name, "new_table": e.new_table.table,
                "legacy_id": e.legacy_id_column, **self._key_type()}

    def new_scope_params(self) -> dict[str, Any]:
        """The scope on the new side (old ``status = 'ACTIVE'`` -> new ``status = 'active'``), for
        queries on the new table: ``scoped`` false when the entity has no scope or its scope column is
        not mapped plainly (then every new row counts as in scope, the consistency diff's rule)."""
        scope = self.entity.scope
        for c in self.entity.columns if scope else ():
            if c.old == scope.column and c.lookup is None and not transforms.has_transform(c):
                values = [c.map.get(v, v) for v in scope.values] if c.map is not None else list(scope.values)
                return {"scoped": True, "scope_values": values, "new_scope_column": c.new}
        return {"scoped": False, "scope_values": [], "new_scope_column": self.entity.legacy_id_column}

    def lookup_columns(self) -> list[tuple[int, Any]]:
        """(config position, column) of each looked-up column (the direct path needs one map each)."""
        return [(i, c) for i, c in enumerate(self.entity.columns) if c.lookup is not None]

    def lookup_map_ids(self, c) -> dict[str, Any]:
        """Identifiers of ``backfill/lookup_map.sql`` for looked-up column ``c``."""
        lk = c.lookup
        return {"lookup_schema": lk.table.schema_name, "lookup_table": lk.table.table, "match": lk.match,
                "value": lk.value}

    def lookup_map_params(self, lookup_maps: dict[int, dict[str, str]]) -> dict[str, Any]:
        """Bound values of the direct select list: each lookup's map (a jsonb object, like the value
        maps) and the name the miss error carries."""
        out: dict[str, Any] = {}
        for i, c in self.lookup_columns():
            out[f"lookup_map_{i}"] = json.dumps(lookup_maps[i])
            out[f"lookup_name_{i}"] = (f"{c.old} (lookup {c.lookup.table}.{c.lookup.match} for {c.new}: "
                                       "not in the map read when the range started)")
        return out

    def map_params(self) -> dict[str, Any]:
        """Bound values of the select list: value maps and the transforms' constants."""
        out: dict[str, Any] = {}
        for i, c in enumerate(self.entity.columns):
            if c.map is not None:
                out[f"map_{i}"] = json.dumps(c.map)
                out[f"map_name_{i}"] = c.old
            out.update(self._value(i, c).params)
        return out

    # -- legacy side ---------------------------------------------------------------------------
    def _value(self, i: int, c, *, probe: bool = False, direct: bool = False) -> transforms.Expr:
        """One column's value in the legacy SELECT: the old column, its value map, then its transform.

        ``probe``: without the unmapped-value guard (a control-schema function that need not exist
        yet); same result type. ``direct``: a looked-up column resolved from its map
        (``lookup_map_<i>``); a non-NULL value the map lacks raises (``backfill_unmapped``), so the
        batch is read again the staged way and resolved in the target, never written as NULL here.
        """
        col = sql.Identifier("src", c.old)
        base: sql.Composable = col
        if direct and c.lookup is not None:
            return transforms.Expr(sql.SQL(_MAPPED).format(
                col=col, map=sql.Placeholder(f"lookup_map_{i}"),
                unmapped=sql.Identifier(self.control_schema, "backfill_unmapped"),
                name=sql.Placeholder(f"lookup_name_{i}")))
        if c.map is not None:
            base = sql.SQL(_MAPPED_PROBE if probe else _MAPPED).format(
                col=col, map=sql.Placeholder(f"map_{i}"),
                unmapped=sql.Identifier(self.control_schema, "backfill_unmapped"),
                name=sql.Placeholder(f"map_name_{i}"))
        if c.lookup is not None or not transforms.has_transform(c):
            return transforms.Expr(base)
        return transforms.forward(c, "src", f"zdm_t{i}", base=None if c.map is None else base)

    def select_items(self, *, probe: bool = False, direct: bool = False) -> list[sql.Composable]:
        """The legacy select expression of each config column, in config order (stage order).

        The preflight runs them (``probe=True``) ``LIMIT 0`` to learn each mapping's output type from
        the server, so every transform added to :meth:`_value` is type-checked too.
        """
        return [self._value(i, c, probe=probe, direct=direct).sql for i, c in enumerate(self.entity.columns)]

    def select_list(self, *, direct: bool = False) -> sql.Composed:
        return sql.SQL(", ").join(self.select_items(direct=direct))

    def read_batch(self, cur, *, after_key: Any, range_hi: Any, limit: int,
                   lookup_params: dict[str, Any] | None = None) -> str:
        """The exact ``COPY (SELECT ...) TO STDOUT`` text for one page (values inlined by mogrify).

        ``after_key`` None: the open first range of a non-integer key. ``lookup_params``
        (:meth:`lookup_map_params` of the range's maps, built once per map read, not per batch): the
        direct layout."""
        tpl = sqlfiles.load("backfill/read_batch.sql")
        direct = lookup_params is not None
        params = {"after_key": after_key, "range_hi": range_hi, "batch_limit": limit, **self.scope_params,
                  **self.map_params(), **(lookup_params or {})}
        tpl.check_params(params)
        composed = tpl.compose(select_list=self.select_list(direct=direct), **self.old_ids())
        return cur.mogrify(composed, params).decode()

    def read_keys(self, cur, keys: list[int]) -> str:
        """The exact ``COPY (SELECT ...) TO STDOUT`` text for the in-scope old rows of ``keys`` (repair)."""
        tpl = sqlfiles.load("consistency/repair_read_keys.sql")
        params = {"keys": list(keys), **self.scope_params, **self.map_params()}
        tpl.check_params(params)
        composed = tpl.compose(select_list=self.select_list(), **self.old_ids())
        return cur.mogrify(composed, params).decode()

    # -- new side ------------------------------------------------------------------------------
    def create_stage(self, *, resolved: bool = False) -> sql.Composed:
        """The session's stage; ``resolved``: the direct layout's (every column typed like the target's)."""
        e = self.entity
        target = sql.SQL("{} AS {}").format(sql.Identifier(e.new_table.schema_name, e.new_table.table),
                                            sql.Identifier("t"))
        froms = [target]
        cols = [sql.Identifier("t", e.legacy_id_column)]
        for i, c in enumerate(e.columns):
            if c.lookup is not None and not resolved:
                alias = f"lk{i}"
                froms.append(sql.SQL("{} AS {}").format(
                    sql.Identifier(c.lookup.table.schema_name, c.lookup.table.table), sql.Identifier(alias)))
                cols.append(sql.SQL("{} AS {}").format(sql.Identifier(alias, c.lookup.match), sql.Identifier(c.new)))
            else:
                cols.append(sql.Identifier("t", c.new))
        return sqlfiles.load("backfill/create_stage.sql").compose(
            stage=self.resolved_stage if resolved else self.stage, stage_columns=sql.SQL(", ").join(cols),
            from_list=sql.SQL(", ").join(froms))

    def write_batch(self, version_column: str | None, *, repair: bool = False,
                    empty_range: bool = False, resolved: bool = False) -> sql.Composed:
        """INSERT ... SELECT from the stage with lookups joined, ON CONFLICT per the version rule.

        ``repair``: the repair's rule (consistency/repair_upsert_*.sql): an equal version is
        overwritten too, without a version column the new row is always overwritten.
        ``empty_range``: the plain INSERT for a key range that held no new rows just before
        (backfill/insert_into_empty_range.sql; a conflict makes it fail, never overwrite).
        ``resolved``: from the resolved stage (direct layout: the lookups are resolved already)."""
        e = self.entity
        stage = sql.SQL("{} AS {}").format(sql.Identifier(self.resolved_stage if resolved else self.stage),
                                           sql.Identifier("s"))
        joins = [stage]
        values = []
        for i, c in enumerate(e.columns):
            if c.lookup is not None and not resolved:
                alias = f"lk{i}"
                joins.append(sql.SQL(_LOOKUP_JOIN).format(
                    table=sql.Identifier(c.lookup.table.schema_name, c.lookup.table.table),
                    alias=sql.Identifier(alias), alias_match=sql.Identifier(alias, c.lookup.match),
                    stage_col=sql.Identifier("s", c.new)))
                values.append(sql.Identifier(alias, c.lookup.value))
            else:
                values.append(sql.Identifier("s", c.new))
        names = [c.new for c in e.columns]
        ids = {**self.new_ids(), "columns": sql.SQL(", ").join(sql.Identifier(n) for n in names),
               "values": sql.SQL(", ").join(values), "source": sql.SQL(" ").join(joins)}
        excluded = sql.SQL(", ").join(sql.Identifier("excluded", n) for n in names)
        if empty_range:
            return sqlfiles.load("backfill/insert_into_empty_range.sql").compose(**ids)
        if repair:
            if version_column is None:
                return sqlfiles.load("consistency/repair_upsert_overwrite.sql").compose(**ids, excluded=excluded)
            return sqlfiles.load("consistency/repair_upsert_newer_or_equal.sql").compose(
                **ids, excluded=excluded, version=version_column)
        if version_column is None:
            return sqlfiles.load("backfill/insert_skip_existing.sql").compose(**ids)
        ids["excluded"] = excluded
        ids["version"] = version_column
        return sqlfiles.load("backfill/upsert_newer_wins.sql").compose(**ids)

    def copy_into_stage(self, *, resolved: bool = False) -> sql.Composed:
        return sqlfiles.load("backfill/copy_into_stage.sql").compose(
            stage=self.resolved_stage if resolved else self.stage)

    def copy_into_target(self) -> sql.Composed:
        """The direct path's ``COPY <target> (legacy id, columns) FROM STDIN`` (direct layout)."""
        cols = sql.SQL(", ").join(sql.Identifier(c.new) for c in self.entity.columns)
        return sqlfiles.load("backfill/copy_into_target.sql").compose(**self.new_ids(), columns=cols)
