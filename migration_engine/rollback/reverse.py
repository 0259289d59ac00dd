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

* value transforms (``migration_engine.transforms``) are inverted **in SQL on the new server**
  (:meth:`ReverseMapping.new_select`: cents / 100, a cast back to the old type, the default back
  to NULL, a reviewed ``inverse`` file for concat / json_object / expression); a transform with
  no inverse refuses the entity when the mapping is built, naming the column. An old row whose
  forward value (computed on the legacy server, :meth:`ReverseMapping.old_select`) already equals
  the new value is kept as it is, so a transform that is not one-to-one (rounding) never
  rewrites rows that did not change.

Only old columns covered by the mapping are written; other old columns keep their value (update)
or their default (insert).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from psycopg2 import sql

from migration_engine import transform_settings as ts
from migration_engine import transforms
from migration_engine.config import ColumnMap, Entity
from migration_engine.errors import MigrationError


class ReverseMappingError(MigrationError, ValueError):
    """A new-table value cannot be expressed in the old table; the message names it."""


class ReverseMapping:
    def __init__(self, entity: Entity, entity_name: str = "") -> None:
        self.entity = entity
        self.name = entity_name or str(entity.old_table)
        self.columns: list[ColumnMap] = []
        self.restores: dict[str, list[str]] = {}    # new column -> the old columns it carries back
        self._index: dict[str, int] = {c.new: i for i, c in enumerate(entity.columns)}
        seen_old: set[str] = set()
        refusals: dict[str, str] = {}                  # old column -> why no mapping can bring it back
        for c in entity.columns:
            if c.lookup is None and transforms.has_transform(c):
                try:
                    restored = list(transforms.inverse(c, "n", "zdm_r", {}))
                except transforms.NoInverse as exc:
                    for col in ts.sources(c):
                        refusals.setdefault(col, str(exc))
                    continue
                for col in ts.sources(c):
                    if col not in restored:
                        refusals.setdefault(col, f"column {c.new!r} declares no inverse for old column {col!r}")
            else:
                restored = [c.old]
            restored = [col for col in restored if col not in seen_old]
            if not restored:
                continue  # two new columns from one old column: the first one carries it back
            if entity.key in restored:
                raise ReverseMappingError(f"{self.name}: column {c.new!r} maps from the old key {entity.key!r}; the "
                                          f"key comes from {entity.legacy_id_column!r}, not from a mapped column")
            seen_old.update(restored)
            self.columns.append(c)
            self.restores[c.new] = restored
        lost = {col: why for col, why in refusals.items() if col not in seen_old}
        if lost:
            raise ReverseMappingError(
                f"{self.name}: the reverse sync cannot write old column(s) {sorted(lost)} back: "
                + "; ".join(dict.fromkeys(lost.values())))
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
        self.old_columns = [col for c in self.columns for col in self.restores[c.new]]
        self.new_columns = [c.new for c in self.columns]
        self.lookups = [c for c in self.columns if c.lookup is not None]
        self.transformed = [c for c in self.columns if c.lookup is None and transforms.has_transform(c)]

    # -- the transforms, computed by the servers -------------------------------------------------
    def _inv_alias(self, c: ColumnMap, col: str) -> str:
        return f"zdm_inv_{self._index[c.new]}_{self.restores[c.new].index(col)}"

    def _fwd_alias(self, c: ColumnMap) -> str:
        return f"zdm_fwd_{self._index[c.new]}"

    def new_select(self, old_types: Mapping[str, str]) -> tuple[list[sql.Composable], dict[str, Any]]:
        """Extra select items on the new row ``n``: each transformed column's old value(s), cast to the old type."""
        items: list[sql.Composable] = []
        params: dict[str, Any] = {}
        for c in self.transformed:
            exprs = transforms.inverse(c, "n", f"zdm_r{self._index[c.new]}", dict(old_types))
            for col in self.restores[c.new]:
                items.append(sql.SQL("{} AS {}").format(exprs[col].sql, sql.Identifier(self._inv_alias(c, col))))
                params.update(exprs[col].params)
        return items, params

    def old_select(self, new_types: Mapping[str, str]) -> tuple[list[sql.Composable], dict[str, Any]]:
        """Extra select items on the old row ``t``: each transformed column's forward value, as the new type.

        The sync keeps an old row whose forward value already equals the new value (a rounding
        scale maps 5.375 and 5.38 to 538: the old 5.375 stays, it is not rewritten)."""
        items: list[sql.Composable] = []
        params: dict[str, Any] = {}
        for c in self.transformed:
            i = self._index[c.new]
            fwd = transforms.forward(c, "t", f"zdm_f{i}", base=_value_map(c, i, params))
            if c.new in new_types:
                fwd = transforms.as_type(fwd, new_types[c.new])
            items.append(sql.SQL("{} AS {}").format(fwd.sql, sql.Identifier(self._fwd_alias(c))))
            params.update(fwd.params)
        return items, params

    def lookup_values(self, rows: list[Mapping[str, Any]]) -> dict[str, set]:
        """Distinct non-NULL new values per looked-up column in ``rows`` (to resolve in one query each)."""
        return {c.new: {r[c.new] for r in rows if r.get(c.new) is not None} for c in self.lookups}

    def to_old(self, row: Mapping[str, Any], inverse_lookups: Mapping[str, Mapping[Any, Any]],
               current: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Old-column values for one new row; raises ReverseMappingError naming the row and value.

        A transformed column's values come from the new server (:meth:`new_select`); ``current``
        (the old row with :meth:`old_select`'s values) keeps its old values where they already
        transform into the new value."""
        out: dict[str, Any] = {}
        key = row.get(self.entity.new_key)
        for c in self.columns:
            value = row.get(c.new)
            if c in self.transformed:
                if current is not None and _same(current.get(self._fwd_alias(c)), value):
                    out.update({col: current.get(col) for col in self.restores[c.new]})
                    continue
                for col in self.restores[c.new]:
                    out[col] = row.get(self._inv_alias(c, col))
                if c.map is None:
                    continue
                value = out[c.old]
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


def _same(a: Any, b: Any) -> bool:
    """Equal as the servers computed them (both NULL counts as equal)."""
    return a == b and (a is None) == (b is None)


def _value_map(c: ColumnMap, i: int, params: dict[str, Any]) -> sql.Composable | None:
    """A mapped column's forward value as the diff computes it (an unknown value becomes NULL)."""
    if c.map is None:
        return None
    params[f"zdm_m{i}"] = json.dumps(c.map, sort_keys=True)
    return sql.SQL("(CAST({} AS jsonb) ->> CAST({} AS text))").format(sql.Placeholder(f"zdm_m{i}"),
                                                                     sql.Identifier("t", c.old))
