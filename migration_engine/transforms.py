"""A column's value transform as SQL, for every user of the column mapping.

One model (``ColumnMap``'s ``cast``/``scale``/``default``/``concat``/``json_object``/``expression``,
shapes in :mod:`migration_engine.transform_settings`) drives:

* the backfill's legacy SELECT list (``backfill/sqlgen.py``: :func:`forward`);
* the consistency diff's old-side values (``consistency/plan.py``: :func:`forward`, cast to the
  new column's type so both sides render alike);
* shadow comparisons (``consistency/shadow.py``: the diff's own row queries for given keys);
* rollback scenario 3's reverse sync (``rollback/reverse.py``/``sync.py``): :func:`inverse`
  computes old values from a new row on the new server, :func:`forward` on the legacy server
  tells whether an old row already stands for the new value (a rounding scale is not one-to-one:
  an old 5.375 kept as 538 cents is left alone, not rewritten as 5.38).

Everything is SQL run by the server, never Python per row. Identifiers come from the config
(``sql.Identifier``); constants (a default, a separator, JSON keys) are bound parameters named
``zdm_<slot>_...`` so callers pass them with the statement; numbers validated at load (the scale
factor) are literals. Named expressions are reviewed files, composed like any SQL file.

For the setup preflight: :func:`output_type` says which SQL type a mapping yields for a given old
column type without a database (``None`` when only the server can tell), and
:func:`probe_output_types` asks the legacy server for the exact result type of every mapped
column (``SELECT <expressions> FROM <old table> WHERE false``: planned, nothing read); a cast
Postgres has no rule for (``integer`` to ``date``) or an expression file naming a missing column
fails there with the column named. A cast that fails only for some values (``'5.37'`` text to
``bigint``, a jsonb object to ``bigint``) cannot be found without reading rows: compare the output
type with the new column's type instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from psycopg2 import sql

from migration_engine import sqlfiles
from migration_engine import transform_settings as ts
from migration_engine.config import ColumnMap, Entity
from migration_engine.errors import MigrationError

Mode = Literal["write", "exact"]
TRANSFORM_KEYS = ("cast", "scale", "default", "concat", "json_object", "expression")


class TransformError(MigrationError):
    """A transform cannot run against this database (a cast Postgres refuses, a broken expression file)."""


class NoInverse(MigrationError, ValueError):
    """Rollback scenario 3 cannot turn a new value back into the old column(s); names the column."""


@dataclass(frozen=True)
class Expr:
    """A composed SQL expression and the bound parameters it needs."""

    sql: sql.Composable
    params: dict[str, Any] = field(default_factory=dict)


def has_transform(cm: ColumnMap) -> bool:
    """Does the column do more than copy, map or look up its old value?"""
    return any(getattr(cm, k) is not None for k in TRANSFORM_KEYS)


def is_plain(cm: ColumnMap) -> bool:
    """A pure copy (or rename): the old value is the new value."""
    return cm.map is None and cm.lookup is None and not has_transform(cm)


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _expression(ref: ts.ExpressionRef, alias: str) -> sql.Composed:
    tpl = sqlfiles.load(ts.expression_file(ref.name))
    body = ts.expression_body(tpl.path.read_text(), tpl.name)
    fmt, idents, _params = sqlfiles.compile_template(body)
    return sql.SQL("(" + fmt + ")").format(**{p: sql.Identifier(alias, ref.args.get(p, p)) for p in idents})


def source(cm: ColumnMap, alias: str, slot: str) -> Expr:
    """The value before map/scale/cast/default: the old column, or what concat/json_object/expression build."""
    if cm.concat is not None:
        cols = [sql.Identifier(alias, c) for c in cm.concat.columns]
        sep = sql.Placeholder(f"{slot}_sep")
        return Expr(sql.SQL("CASE WHEN num_nonnulls({cols}) = 0 THEN NULL ELSE concat_ws(CAST({sep} AS text), {cols})"
                            " END").format(cols=sql.SQL(", ").join(cols), sep=sep),
                    {f"{slot}_sep": cm.concat.separator})
    if cm.json_object is not None:
        parts, params = [], {}
        for i, (key, col) in enumerate(cm.json_object.items()):
            params[f"{slot}_k{i}"] = key
            parts += [sql.SQL("CAST({} AS text)").format(sql.Placeholder(f"{slot}_k{i}")), sql.Identifier(alias, col)]
        return Expr(sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(parts)), params)
    if cm.expression is not None:
        return Expr(_expression(cm.expression, alias))
    return Expr(sql.Identifier(alias, cm.old))


def _scaled(value: sql.Composable, scale: ts.Scale, who: str, slot: str, mode: Mode) -> Expr:
    v = sql.SQL("(CAST({} AS numeric) * {})").format(value, sql.Literal(Decimal(scale.by)))
    r = scale.rounding
    if r == "half_up":      # numeric round() rounds half away from zero
        return Expr(sql.SQL("round({})").format(v))
    if r == "floor":
        return Expr(sql.SQL("floor({})").format(v))
    if r == "ceil":
        return Expr(sql.SQL("ceiling({})").format(v))
    if r == "half_even":
        return Expr(sql.SQL("CASE WHEN abs({v} - trunc({v})) = 0.5 THEN trunc({v}) + CASE WHEN mod(trunc({v}), 2) = 0 "
                            "THEN 0 ELSE sign({v}) END ELSE round({v}) END").format(v=v))
    if mode == "exact":     # the unrounded product: the backfill plan lists the rows with a fraction
        return Expr(v)
    # rounding: error. Plain SQL has no RAISE; a failing cast of a message is the error, and it names the column.
    msg = f"{slot}_msg"
    return Expr(sql.SQL("CASE WHEN {v} = trunc({v}) THEN trunc({v}) ELSE CAST(CAST({msg} AS text) || CAST({v} AS text)"
                        " AS numeric) END").format(v=v, msg=sql.Placeholder(msg)),
                {msg: f"refused by the transform of {who}: scale by {scale.by} (rounding: error) gives a fraction: "})


def forward(cm: ColumnMap, alias: str, slot: str, *, base: sql.Composable | None = None,
            mode: Mode = "write") -> Expr:
    """The new value computed from the old row ``alias``.

    ``base``: the caller's expression for a mapped column (the backfill raises on an unmapped
    value, the diff yields NULL); otherwise :func:`source`. ``slot`` prefixes the parameter names
    (start it with ``zdm_`` for the diff). ``mode``: ``write`` refuses a fraction under
    ``rounding: error`` (in every user: a row the mapping refuses cannot be copied, compared or
    synced back); ``exact`` gives the unrounded product instead (the backfill plan's check).
    """
    src = source(cm, alias, slot) if base is None else Expr(base)
    value, params = src.sql, dict(src.params)
    if cm.scale is not None:
        scaled = _scaled(value, cm.scale, f"column {cm.new}", slot, mode)
        value, params = scaled.sql, {**params, **scaled.params}
    if cm.cast is not None:
        value = sql.SQL("CAST({} AS {})").format(value, sql.SQL(cm.cast))
    if cm.default is not None:
        params[f"{slot}_default"] = _text(cm.default)
        value = sql.SQL("coalesce({}, {})").format(value, sql.Placeholder(f"{slot}_default"))
    return Expr(value, params)


def as_type(expr: Expr, type_sql: str) -> Expr:
    """``CAST(expr AS type)``; ``type_sql`` is a catalog ``format_type`` spelling (checked, not from the config)."""
    if not _CATALOG_TYPE.fullmatch(type_sql):
        raise TransformError(f"unexpected type name {type_sql!r} from the catalog")
    return Expr(sql.SQL("CAST({} AS {})").format(expr.sql, sql.SQL(type_sql)), expr.params)


_CATALOG_TYPE = re.compile(r'[A-Za-z0-9_ ."(),\[\]]{1,200}')


# --- the inverse (rollback scenario 3) ---------------------------------------------------------
def inverse(cm: ColumnMap, alias: str, slot: str, old_types: dict[str, str]) -> dict[str, Expr]:
    """Old column -> its value computed from the new row ``alias`` (in the new database).

    ``old_types``: the old table's ``format_type`` per column, the type each value is cast back to.
    A map's inverse stays where it is (a dict, ``rollback/reverse.py``): here a mapped column only
    loses its cast and default. Raises :class:`NoInverse` naming the column when there is none.
    """
    def back(value: sql.Composable, col: str) -> Expr:
        return as_type(Expr(value), old_types[col]) if col in old_types else Expr(value)

    if cm.concat is not None or cm.json_object is not None or cm.expression is not None:
        refs = ts.inverse_refs(cm)
        if not refs:
            kind = "concat" if cm.concat is not None else "json_object" if cm.json_object is not None else "expression"
            raise NoInverse(f"column {cm.new!r} is built by {kind} from {ts.sources(cm)}, which has no inverse; "
                            f"declare 'inverse' (a reviewed file include/sql/{ts.TRANSFORM_DIR}/<name>.sql per old "
                            "column) or roll this entity back another way")
        return {col: back(_expression(ref, alias), col) for col, ref in refs.items()}
    value: sql.Composable = sql.Identifier(alias, cm.new)
    params: dict[str, Any] = {}
    if cm.default is not None:
        params[f"{slot}_default"] = _text(cm.default)
        value = sql.SQL("NULLIF({}, {})").format(value, sql.Placeholder(f"{slot}_default"))
    if cm.scale is not None:
        value = sql.SQL("(CAST({} AS numeric) / {})").format(value, sql.Literal(Decimal(cm.scale.by)))
    if cm.map is not None:
        return {cm.old: Expr(sql.SQL("CAST({} AS text)").format(value), params)}
    out = back(value, cm.old)
    return {cm.old: Expr(out.sql, params)}


# --- types, for the preflight ------------------------------------------------------------------
def column_types(conn, table) -> dict[str, str]:
    """{column: format_type spelling} of a table (``numeric(12,2)``, ``character varying(20)``); {} if absent."""
    with conn.cursor() as cur:
        sqlfiles.run(cur, "consistency/table_columns.sql",
                     params={"schema_name": table.schema_name, "table_name": table.table})
        return {name: data_type for name, _udt, data_type in cur.fetchall()}


def output_type(cm: ColumnMap, old_type: str | None) -> str | None:
    """The SQL type a mapping yields for an old column of ``old_type``, without a database.

    Spelled as the config or ``format_type`` spells it (``bigint``, ``numeric``, ``text``,
    ``jsonb``). ``None`` when only a server can tell: a looked-up column (the lookup table's
    ``value`` column), an expression without a cast (use :func:`probe_output_types`), or a plain
    column whose ``old_type`` is not given. ``scale`` yields a whole ``numeric``, so a ``bigint``
    target needs no cast for the backfill; cast it to say so.
    """
    if cm.cast is not None:
        return cm.cast
    if cm.lookup is not None or cm.expression is not None:
        return None
    if cm.json_object is not None:
        return "jsonb"
    if cm.concat is not None or cm.map is not None:
        return "text"
    if cm.scale is not None:
        return "numeric"
    return old_type


def _probe_value(cm: ColumnMap, alias: str, slot: str) -> Expr:
    """What the legacy side computes for a column, type-wise (a map yields text; a lookup the old value)."""
    col = sql.Identifier(alias, cm.old)
    if cm.lookup is not None:
        return Expr(col)
    return forward(cm, alias, slot,
                   base=sql.SQL("CAST({} AS text)").format(col) if cm.map is not None else None)


def probe_output_types(conn, entity: Entity, *, path: str = "entities") -> dict[str, str]:
    """New column -> the type name the legacy server gives each mapped value (``format_type``).

    Runs the expressions once with ``WHERE false`` (planned, no row read). A mapping Postgres
    cannot plan (a cast it refuses, an expression file naming a missing column) raises
    :class:`TransformError` naming the config path of that column (``entities.orders.columns[3]``)
    and the server's message; the transaction is rolled back either way.
    """
    import psycopg2

    out: dict[str, str] = {}
    table = (entity.old_table.schema_name, entity.old_table.table)
    for i, cm in enumerate(entity.columns):
        e = _probe_value(cm, "src", f"zdm_t{i}")
        tpl = sqlfiles.load("common/probe_expression.sql")
        try:
            with conn.cursor() as cur:
                cur.execute(tpl.compose(value=e.sql, table=table, alias="src"), e.params)
                oid = cur.description[0].type_code
                sqlfiles.run(cur, "common/type_name.sql", params={"type_oid": oid})
                out[cm.new] = cur.fetchone()[0]
        except psycopg2.Error as exc:
            conn.rollback()
            raise TransformError(f"{path}.columns[{i}] ({cm.new}): the legacy server refuses the mapping on "
                                 f"{entity.old_table}: {(exc.diag.message_primary or str(exc)).strip()}") from exc
        conn.rollback()
    return out

