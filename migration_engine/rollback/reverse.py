"""The config's column mapping run backwards: a new-table row as the old table would hold it.

Forward (``entities.<name>.columns``): plain copy, ``map`` (old value -> new value, e.g.
``ACTIVE -> active``) or ``lookup`` (old value -> a value read from a table in the new database,
e.g. ``tenant_id -> providers.id``). Backwards:

* plain columns are copied;
* ``map`` is inverted; it must be one-to-one (two old values mapping to one new value cannot be
  told apart - refused when the mapping is built) and a new value outside it is refused, named,
  instead of being written to the old table as something the old application never wrote;
* ``lookup`` is read the other way round (``SELECT match FROM table WHERE value = ANY(...)``); a
  new value with no row there is refused, named.

Only old columns covered by the mapping are written; other old columns keep their value (update)
or their default (insert).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from migration_engine.config import ColumnMap, Entity
from migration_engine.errors import MigrationError


class ReverseMappingError(MigrationError, ValueError):
    """A new-table value cannot be expressed in the old table; the message names it."""


class ReverseMapping:
    def __init__(self, entity: Entity, entity_name: str = "") -> None:
        self.entity = entity
        self.name = entity_name or str(entity.old_table)
        self.columns: list[ColumnMap] = []
        seen_old: set[str] = set()
        for c in entity.columns:
            if c.old in seen_old:
                continue  # two new columns from one old column: the first one carries it back
            if c.old == entity.key:
                raise ReverseMappingError(f"{self.name}: column {c.new!r} maps from the old key {c.old!r}; the key "
                                          f"comes from {entity.legacy_id_column!r}, not from a mapped column")
            seen_old.add(c.old)
            self.columns.append(c)
        self.inverse: dict[str, dict[str, str]] = {}
        for c in self.columns:
            if c.map is not None:
                inv: dict[str, str] = {}
                for old_value, new_value in c.map.items():
                    if new_value in inv:
                        raise ReverseMappingError(
                            f"{self.name}: column {c.new!r} maps both {inv[new_value]!r} and {old_value!r} to "
                            f"{new_value!r}; the mapping cannot be reversed")
                    inv[new_value] = old_value
                self.inverse[c.new] = inv
        self.old_columns = [c.old for c in self.columns]
        self.new_columns = [c.new for c in self.columns]
        self.lookups = [c for c in self.columns if c.lookup is not None]

    def lookup_values(self, rows: list[Mapping[str, Any]]) -> dict[str, set]:
        """Distinct non-NULL new values per looked-up column in ``rows`` (to resolve in one query each)."""
        return {c.new: {r[c.new] for r in rows if r.get(c.new) is not None} for c in self.lookups}

    def to_old(self, row: Mapping[str, Any], inverse_lookups: Mapping[str, Mapping[Any, Any]]) -> dict[str, Any]:
        """Old-column values for one new row; raises ReverseMappingError naming the row and value."""
        out: dict[str, Any] = {}
        key = row.get(self.entity.new_key)
        for c in self.columns:
            value = row.get(c.new)
            if value is not None and c.map is not None:
                try:
                    value = self.inverse[c.new][str(value)]
                except KeyError:
                    raise ReverseMappingError(
                        f"{self.name}: new row {self.entity.new_key}={key} has {c.new}={value!r}, which the mapping "
                        f"does not know (known: {sorted(self.inverse[c.new])}); add it to the config's map") from None
            elif value is not None and c.lookup is not None:
                resolved = inverse_lookups.get(c.new, {})
                if value not in resolved:
                    lk = c.lookup
                    raise ReverseMappingError(
                        f"{self.name}: new row {self.entity.new_key}={key} has {c.new}={value!r}, but {lk.table} has "
                        f"no row with {lk.value}={value!r}; cannot recover its {c.old}")
                value = resolved[value]
            out[c.old] = value
        return out

    def differs(self, expected: Mapping[str, Any], actual: Mapping[str, Any] | None) -> list[str]:
        """Old columns whose value differs (all of them when the old row is missing)."""
        if actual is None:
            return list(self.old_columns)
        return [c for c in self.old_columns if expected.get(c) != actual.get(c)]
