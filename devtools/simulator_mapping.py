"""Column mapping and SQL composition for the application simulator.

Why separate: the mapping is the config's contract (``columns``: plain copy, ``map``, ``lookup``)
applied row by row the way an application applies it, and the helpers compose the column lists that
the devtools/sql/simulator files leave as ``"{columns}"``-style placeholders.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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


class EntityMapping:
    """The config's column mapping, applied in both directions by the application."""

    def __init__(self, entity: Entity, touch: tuple[str, ...] = ("updated_at",)) -> None:
        self.entity = entity
        self.columns: list[ColumnMap] = list(entity.columns)
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
            out[c.new] = value
        return out

    def to_old(self, new: Mapping[str, Any]) -> dict[str, Any]:
        """Old-column values recoverable from a new row (looked-up columns are not invertible)."""
        out: dict[str, Any] = {}
        for c in self.columns:
            if c.lookup is not None or c.new not in new:
                continue
            value = new[c.new]
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
