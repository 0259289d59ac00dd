"""Column mapping and SQL composition for the application simulator.

Why separate: the mapping is the config's contract (``columns``: plain copy, ``map``, ``lookup``)
applied row by row the way an application applies it, and the helpers compose the column lists that
the devtools/sql/simulator files leave as ``"{columns}"``-style placeholders.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from typing import Any

from psycopg2 import sql

from migration_engine import sqlfiles
from migration_engine.config import ColumnMap, Entity


def corrupt(value: Any) -> Any:
    """A visibly wrong value of the same type (what a buggy dual-write would store)."""
    if isinstance(value, str):
        return value + " [corrupted]"
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return value + 1
    return value


_ROUNDING = {"half_even": ROUND_HALF_EVEN, "half_up": ROUND_HALF_UP, "floor": ROUND_FLOOR, "ceil": ROUND_CEILING}
_INT_CASTS = ("smallint", "integer", "int", "bigint")
SIMULATED_TRANSFORMS = ("map", "lookup", "scale", "cast", "default")


def _forward(c: ColumnMap, value: Any) -> Any:
    """What the application writes for a transformed column: the config's scale -> cast -> default,
    as the engine's SQL computes them (migration_engine.transforms), for a simulator row."""
    if value is not None and c.scale is not None:
        product = Decimal(str(value)) * Decimal(c.scale.by)
        if c.scale.rounding == "error":
            if product != product.to_integral_value():
                raise ValueError(f"column {c.new}: scale by {c.scale.by} gives a fraction ({product})")
            value = product.to_integral_value()
        else:
            value = product.quantize(Decimal(1), rounding=_ROUNDING[c.scale.rounding])
    if value is not None and c.cast is not None and c.cast.lower() in _INT_CASTS:
        value = int(value)
    if value is None and c.default is not None:
        value = c.default
    return value


def _inverse(c: ColumnMap, value: Any) -> Any:
    """The old value behind a new one (the engine's inverse: default -> NULL, scale -> divided)."""
    if c.default is not None and value == c.default:
        return None
    if value is not None and c.scale is not None:
        value = Decimal(str(value)) / Decimal(c.scale.by)
    return value


class EntityMapping:
    """The config's column mapping, applied in both directions by the application."""

    def __init__(self, entity: Entity, touch: tuple[str, ...] = ("updated_at",)) -> None:
        self.entity = entity
        self.columns: list[ColumnMap] = list(entity.columns)
        unsupported = [(c.new, k) for c in self.columns for k in ("concat", "json_object", "expression")
                       if getattr(c, k) is not None]
        if unsupported:
            raise ValueError(f"the simulator applies {', '.join(SIMULATED_TRANSFORMS)} only; "
                             f"column(s) {unsupported} use another transform")
        self.old_columns = list(dict.fromkeys(c.old for c in self.columns))
        self.new_columns = [c.new for c in self.columns]
        self.old_returning = list(dict.fromkeys([entity.key, *self.old_columns]))
        self.new_returning = list(dict.fromkeys([entity.new_key, entity.legacy_id_column, *self.new_columns]))
        plain = [c for c in self.columns if c.map is None and c.lookup is None]
        self.touch_old = [c.old for c in plain if c.old in touch]
        self.touch_new = [c.new for c in plain if c.old in touch]

    def check_old_values(self, values: Mapping[str, Any]) -> None:
        unknown = sorted(set(values) - set(self.old_columns))
        if unknown:
            raise ValueError(f"not mapped old column(s) {unknown}; known: {self.old_columns}")

    def to_new(self, old: Mapping[str, Any], lookup: Callable[[ColumnMap, Any], Any]) -> dict[str, Any]:
        """New-column values for the old columns present in ``old`` (unmapped values pass through)."""
        out: dict[str, Any] = {}
        for c in self.columns:
            if c.old not in old:
                continue
            value = old[c.old]
            if value is not None and c.map is not None:
                value = c.map.get(str(value), value)
            elif value is not None and c.lookup is not None:
                value = lookup(c, value)
            out[c.new] = _forward(c, value)
        return out

    def to_old(self, new: Mapping[str, Any]) -> dict[str, Any]:
        """Old-column values recoverable from a new row (looked-up columns are not invertible)."""
        out: dict[str, Any] = {}
        for c in self.columns:
            if c.lookup is not None or c.new not in new:
                continue
            value = _inverse(c, new[c.new])
            if value is not None and c.map is not None:
                inverse = {v: k for k, v in reversed(list(c.map.items()))}
                value = inverse.get(str(value), value)
            out.setdefault(c.old, value)
        return out

    def old_name(self, new_column: str) -> str | None:
        return next((c.old for c in self.columns if c.new == new_column), None)

    def in_scope(self, old_row: Mapping[str, Any]) -> bool:
        scope = self.entity.scope
        return scope is None or str(old_row.get(scope.column)) in scope.values


def idents(names: list[str]) -> sql.Composed:
    """``"a", "b"``: fills a list placeholder such as ``"{columns}"``."""
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def placeholders(n: int, extra: Sequence[sql.Composable] = ()) -> sql.Composed:
    """``%(v0)s, %(v1)s, ...`` (bound by ``bind``) followed by ``extra`` pieces such as ``now()``."""
    return sql.SQL(", ").join([*(sql.Placeholder(f"v{i}") for i in range(n)), *extra])


def bind(values: list[Any], **named: Any) -> dict[str, Any]:
    """Parameters for ``placeholders`` plus the file's own ``@name`` values."""
    return {**{f"v{i}": v for i, v in enumerate(values)}, **named}


def run(cur, name: str, identifiers: dict[str, Any], params: dict[str, Any]) -> dict | None:
    """Execute a simulator SQL file (list placeholders carry their own values); first row as a dict."""
    tpl = sqlfiles.load(name)
    tpl.check_params(params)  # the file's own @params must be present
    cur.execute(tpl.compose(**identifiers), params)
    if cur.description is None:
        return None
    row = cur.fetchone()
    return None if row is None else dict(zip([d.name for d in cur.description], row, strict=True))
