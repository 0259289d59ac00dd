"""Rollback scenario 3's core: bring the old tables up to date from the new ones, and prove it.

After the write cutover the new tables are authoritative: rows were created there (without an old
key unless ``keep_old_sync`` mirrored them) and changed there (the old copy is stale, or was
mirrored with errors). :class:`ReverseSync` walks the whole new table in key order (keyset
batches) and, for every row, compares the old table's row with the reverse-mapped new row:

* linked (has ``legacy_id``), old row equal   -> nothing to do;
* linked, old row different or missing       -> upsert it under its old key;
* not linked (created after the cutover)     -> reserve an old key from the old key's sequence,
  write it into the new row's ``legacy_id`` first (commit), then insert the old row. A crash in
  between leaves a *linked* row with a missing old row, which the next run inserts: never a
  duplicate. The reserved key is checked to be free (a sequence behind hand-inserted keys must
  not overwrite an unrelated row); the sequence is moved past the largest key at the end.

Comparing every row (instead of trusting ``updated_at > cutover``) finds every change, whatever
the application did with its timestamps; it costs one read of both tables.

Deletes travel back too. A row deleted in the new table after the cutover leaves an *orphan* in
the old table: an old row in the entity's scope (the rows that were migrated) that no live new row
links to. :func:`find_orphans` walks the old table's in-scope rows (keyset batches) and asks the
new table which keys are still linked; :func:`remove_orphans` deletes them or marks them as the
old application marks a deleted row (``entities.<name>.rollback_deletes``), all of an entity in
one transaction together with the record of which keys it removed - a crash leaves either
nothing removed or the removal recorded. At most ``cutover.rollback_max_deletes`` per entity: a
new table that is empty or wrong must not empty the old one.

``run(apply=False)`` is the verification of the new -> old direction: the same walk, counting
differences and computing a digest of each side over the compared values (equal digests =
identical content). The old -> new direction is :func:`find_orphans` (no orphan may be left);
both walks also compute an order-independent checksum and count of the in-scope rows (the new
side from the reverse-mapped values), which must be equal.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg2
from psycopg2 import sql

from migration_engine import sqlfiles, transforms
from migration_engine.config import MigrationConfig, TableRef
from migration_engine.cutover.activity import qualified
from migration_engine.errors import MigrationError, Refused
from migration_engine.keys import UnsupportedKey, read_key
from migration_engine.rollback.reverse import ReverseMapping

log = logging.getLogger(__name__)


class SyncError(MigrationError):
    """The forward sync cannot continue; the message names the row or object."""


def _t(table: TableRef) -> tuple[str, str]:
    return (table.schema_name, table.table)


def _list(names: list[str]) -> sql.Composed:
    return sql.SQL(", ").join(sql.Identifier(n) for n in names)


def _fetch_dicts(cur) -> list[dict[str, Any]]:
    names = [d.name for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def key_sequence(conn, table: TableRef, key: str) -> str | None:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "rollback/key_sequence.sql", params={"table_name": qualified(table), "key_column": key})
        return cur.fetchone()[0]


def key_ids(conn, e, name: str) -> dict[str, Any]:
    """``"{key_type}"``: the old key's type, which key arrays are cast to (any supported key type).

    Read from the legacy catalog (no commit: safe inside the caller's transaction); an unsupported or
    missing key is a :class:`SyncError` naming it."""
    try:
        key = read_key(conn, schema=e.old_table.schema_name, table=e.old_table.table, column=e.key,
                            what=f"entity {name}")
    except UnsupportedKey as exc:
        raise SyncError(str(exc)) from exc
    return {"key_type": key.cast, "_key": key}


def _cast(ids: dict[str, Any]) -> dict[str, Any]:
    return {"key_type": ids["key_type"]}


def count_rows(conn, table: TableRef) -> int:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "rollback/count_rows.sql", {"table": _t(table)})
        return int(cur.fetchone()[0])


@dataclass
class SyncStats:
    entity: str
    new_rows: int = 0
    unchanged: int = 0
    updated: int = 0          # old row existed but differed
    inserted: int = 0         # old row was missing (linked new row)
    linked_now: int = 0       # new rows created after the cutover, given an old key now
    unlinked: int = 0         # verification: new rows without an old key
    batches: int = 0
    digest_new: str = ""
    digest_old: str = ""
    scope_rows_new: int | None = None   # new rows whose reverse-mapped values are in scope (None: unknowable)
    scope_checksum_new: str | None = None
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def differences(self) -> int:
        return self.updated + self.inserted + self.unlinked

    def as_dict(self) -> dict[str, Any]:
        return {"entity": self.entity, "new_rows": self.new_rows, "unchanged": self.unchanged,
                "updated": self.updated, "inserted": self.inserted, "linked_now": self.linked_now,
                "unlinked": self.unlinked, "batches": self.batches, "digest_new": self.digest_new,
                "digest_old": self.digest_old, "scope_rows_new": self.scope_rows_new,
                "scope_checksum_new": self.scope_checksum_new, "examples": self.examples}


class ReverseSync:
    """One entity: new table (new database) -> old table (legacy database)."""

    def __init__(self, cfg: MigrationConfig, entity_name: str, legacy, new, *, batch_size: int | None = None,
                 max_examples: int | None = None) -> None:
        self.cfg = cfg
        self.name = entity_name
        self.entity = cfg.entities[entity_name]
        self.rev = ReverseMapping(self.entity, entity_name)
        self.legacy, self.new = legacy, new
        self.batch_size = batch_size or cfg.backfill.batch_size
        self.max_examples = max_examples or cfg.consistency.max_reported_keys
        self._sequence: str | None = None
        self._sequence_checked = False
        self._column_types: tuple[dict[str, str], dict[str, str]] | None = None
        self._key_ids: dict[str, Any] | None = None

    @property
    def key(self) -> dict[str, Any]:
        if self._key_ids is None:
            self._key_ids = key_ids(self.legacy, self.entity, self.name)
        return self._key_ids

    # -- reads --------------------------------------------------------------------------------
    def _types(self) -> tuple[dict[str, str], dict[str, str]]:
        """The old and new tables' column types (what transformed values are cast to), read once."""
        if self._column_types is None:
            self._column_types = (transforms.column_types(self.legacy, self.entity.old_table),
                                  transforms.column_types(self.new, self.entity.new_table))
            self.legacy.rollback()
            self.new.rollback()
        return self._column_types

    def _new_batch(self, after: Any, first: bool) -> list[dict[str, Any]]:
        e = self.entity
        extra, extra_params = self.rev.new_select(self._types()[0]) if self.rev.transformed else ([], {})
        tpl = sqlfiles.load("rollback/new_rows_batch.sql")
        params = {"first_batch": first, "after": after, "batch_size": self.batch_size}
        tpl.check_params(params)
        with self.new.cursor() as cur:
            cur.execute(tpl.compose(table=_t(e.new_table), new_key=e.new_key, legacy_id=e.legacy_id_column,
                                    columns=sql.SQL(", ").join([_list(self.rev.new_columns), *extra])),
                        {**params, **extra_params})
            rows = _fetch_dicts(cur)
        self.new.rollback()
        return rows

    def _inverse_lookups(self, rows: list[dict[str, Any]]) -> dict[str, dict[Any, Any]]:
        out: dict[str, dict[Any, Any]] = {}
        for c, values in zip(self.rev.lookups, self.rev.lookup_values(rows).values(), strict=True):
            lk = c.lookup
            if not values:
                out[c.new] = {}
                continue
            with self.new.cursor() as cur:
                sqlfiles.run(cur, "rollback/lookup_inverse.sql",
                             {"table": _t(lk.table), "value": lk.value, "match": lk.match},
                             {"new_values": sorted(values)})
                pairs = cur.fetchall()
            self.new.rollback()
            mapping: dict[Any, Any] = {}
            for new_value, old_value in pairs:
                if new_value in mapping and mapping[new_value] != old_value:
                    raise SyncError(f"{self.name}: {lk.table} maps {lk.value}={new_value!r} to several {lk.match} "
                                    f"values; the lookup cannot be reversed")
                mapping[new_value] = old_value
            out[c.new] = mapping
        return out

    def old_rows(self, keys: list[Any]) -> dict[Any, dict[str, Any]]:
        if not keys:
            return {}
        e = self.entity
        extra, extra_params = self.rev.old_select(self._types()[1]) if self.rev.transformed else ([], {})
        tpl = sqlfiles.load("rollback/old_rows_by_keys.sql")
        with self.legacy.cursor() as cur:
            cur.execute(tpl.compose(table=_t(e.old_table), key=e.key,
                                    columns=sql.SQL(", ").join([_list(self.rev.old_columns), *extra]),
                                    **_cast(self.key)),
                        {"keys": list(keys), **extra_params})
            rows = _fetch_dicts(cur)
        return {r[e.key]: r for r in rows}

    # -- writes -------------------------------------------------------------------------------
    def sequence(self) -> str | None:
        if not self._sequence_checked:
            self._sequence = key_sequence(self.legacy, self.entity.old_table, self.entity.key)
            self._sequence_checked = True
        return self._sequence

    def _allocate_old_key(self) -> Any:
        seq = self.sequence()
        uuid_key = self.key["_key"].kind == "uuid"
        if seq is None and not uuid_key:
            raise SyncError(f"{self.name}: {self.entity.old_table}.{self.entity.key} ({self.key['_key'].type_name}) "
                            "has no sequence; cannot give rows created after the cutover an old key (an integer "
                            "key needs its serial/identity sequence; a uuid key gets gen_random_uuid())")
        for _ in range(10_000):
            with self.legacy.cursor() as cur:
                if seq is None:
                    sqlfiles.run(cur, "rollback/new_uuid_key.sql")
                else:
                    sqlfiles.run(cur, "rollback/next_old_key.sql", params={"sequence_name": seq})
                candidate = cur.fetchone()[0]
            if not self.old_rows([candidate]):
                return candidate
        raise SyncError(f"{self.name}: the sequence {seq} keeps returning keys already used in "
                        f"{self.entity.old_table}; move it past max({self.entity.key}) by hand")

    def _link(self, new_key: Any, legacy_id: Any) -> None:
        e = self.entity
        with self.new.cursor() as cur:
            sqlfiles.run(cur, "rollback/link_legacy_id.sql",
                         {"table": _t(e.new_table), "legacy_id": e.legacy_id_column, "new_key": e.new_key},
                         {"legacy_id": legacy_id, "new_key": new_key})
            linked = cur.fetchone()
        self.new.commit()
        if linked is None:
            raise SyncError(f"{self.name}: new row {e.new_key}={new_key} was linked to an old key by someone else "
                            "during the sync (is maintenance mode on?); re-run the sync")

    def _upsert(self, key: Any, values: dict[str, Any]) -> None:
        e = self.entity
        cols = list(values)
        tpl = sqlfiles.load("rollback/upsert_old_row.sql")
        ids = {"table": _t(e.old_table), "key": e.key, "columns": _list(cols),
               "values": sql.SQL(", ").join(sql.Placeholder(f"v{i}") for i in range(len(cols))),
               "excluded": sql.SQL(", ").join(sql.Identifier("excluded", c) for c in cols)}
        params = {"key_value": key, **{f"v{i}": values[c] for i, c in enumerate(cols)}}
        tpl.check_params(params)
        with self.legacy.cursor() as cur:
            cur.execute(tpl.compose(**ids), params)

    def sync_sequence(self) -> None:
        seq = self.sequence()
        if seq is None:
            return
        with self.legacy.cursor() as cur:
            sqlfiles.run(cur, "rollback/sync_sequence.sql",
                         {"table": _t(self.entity.old_table), "key": self.entity.key}, {"sequence_name": seq})
        self.legacy.commit()

    # -- the walk -----------------------------------------------------------------------------
    def run(self, *, apply: bool, on_batch=None) -> SyncStats:
        e = self.entity
        stats = SyncStats(self.name)
        h_new, h_old = hashlib.md5(usedforsecurity=False), hashlib.md5(usedforsecurity=False)
        scope = OldScope(self.entity)
        knowable = scope.knowable(self.rev.old_columns)
        scope_sum = scope_rows = 0
        after, first = None, True
        while True:
            rows = self._new_batch(after, first)
            if not rows:
                break
            first, after = False, rows[-1][e.new_key]
            stats.batches += 1
            stats.new_rows += len(rows)
            inverse = self._inverse_lookups(rows)
            expected = {r[e.new_key]: self.rev.to_old(r, inverse) for r in rows}
            for r in rows:
                if r[e.legacy_id_column] is None:
                    if not apply:
                        stats.unlinked += 1
                        self._example(stats, {"new_key": r[e.new_key], "problem": "no old key"})
                        continue
                    key = self._allocate_old_key()
                    self.legacy.commit()
                    self._link(r[e.new_key], key)
                    r[e.legacy_id_column] = key
                    stats.linked_now += 1
            linked = [r for r in rows if r[e.legacy_id_column] is not None]
            old = self.old_rows([r[e.legacy_id_column] for r in linked])
            if self.rev.transformed:  # an old row that already transforms into the new value is kept as it is
                expected.update({r[e.new_key]: self.rev.to_old(r, inverse, old.get(r[e.legacy_id_column]))
                                 for r in linked})
            for r in linked:
                key, want = r[e.legacy_id_column], expected[r[e.new_key]]
                have = old.get(key)
                diff = self.rev.differs(want, have)
                h_new.update(_line(key, want, self.rev.old_columns))
                if knowable and scope.holds(want):
                    scope_rows += 1
                    scope_sum = (scope_sum + row_hash(key, want, self.rev.old_columns)) % _MOD
                if diff:
                    if have is None:
                        stats.inserted += 1
                    else:
                        stats.updated += 1
                    self._example(stats, {"old_key": key, "new_key": r[e.new_key],
                                          "problem": "missing in old" if have is None else f"differs: {diff}"})
                    if apply:
                        self._upsert(key, want)
                        have = want
                else:
                    stats.unchanged += 1
                h_old.update(_line(key, have, self.rev.old_columns))
            self.legacy.commit()
            if on_batch is not None:
                on_batch(stats)
        if apply:
            self.sync_sequence()
        stats.digest_new, stats.digest_old = h_new.hexdigest(), h_old.hexdigest()
        if knowable:
            stats.scope_rows_new, stats.scope_checksum_new = scope_rows, f"{scope_sum:032x}"
        log.info("%s %s: %s", "sync" if apply else "verify", self.name, stats.as_dict())
        return stats

    def _example(self, stats: SyncStats, example: dict[str, Any]) -> None:
        if len(stats.examples) < self.max_examples:
            stats.examples.append({k: str(v) for k, v in example.items()})


def probe_reverse(cfg: MigrationConfig, entity_name: str, legacy, new) -> list[str]:
    """Can both servers compute the reverse sync's transformed values? (``WHERE false``: nothing read.)

    For the pre-flight: an inverse file naming a column the new table lacks, or a cast back that
    Postgres refuses, is named before maintenance mode goes on, not in the middle of the sync."""
    e = cfg.entities[entity_name]
    rev = ReverseMapping(e, entity_name)
    if not rev.transformed:
        return []
    old_types, new_types = transforms.column_types(legacy, e.old_table), transforms.column_types(new, e.new_table)
    problems = []
    tpl = sqlfiles.load("common/probe_expression.sql")
    for conn, (items, params), table, alias, side in (
            (new, rev.new_select(old_types), e.new_table, "n", "new"),
            (legacy, rev.old_select(new_types), e.old_table, "t", "legacy")):
        try:
            with conn.cursor() as cur:
                cur.execute(tpl.compose(value=sql.SQL(", ").join(items), table=_t(table), alias=alias), params)
        except psycopg2.Error as exc:
            problems.append(f"{entity_name}: the {side} database refuses the transformed columns "
                            f"{[c.new for c in rev.transformed]} of the reverse sync: "
                            f"{(exc.diag.message_primary or str(exc)).strip()}")
        finally:
            conn.rollback()
    return problems


def _line(key: Any, values: dict[str, Any] | None, columns: list[str]) -> bytes:
    if values is None:
        return f"{key}|<missing>\n".encode()
    return (f"{key}|" + "|".join(repr(str(values.get(c))) if values.get(c) is not None else "NULL"
                                 for c in columns) + "\n").encode()


def missing_keys(cfg: MigrationConfig, entity_name: str, side, legacy, *, batch_size: int | None = None,
                 max_examples: int | None = None, deleted=()) -> tuple[int, int, list[Any], int]:
    """(rows in the side copy, of them missing from the live old table, example keys, of them deleted).

    ``deleted``: keys this rollback removed on purpose (their new row was deleted after the
    cutover); they are counted apart, not as missing. Compared as text (the record is JSON).
    """
    excused = {str(k) for k in deleted}
    deleted_gone = 0
    e = cfg.entities[entity_name]
    size = batch_size or cfg.backfill.batch_size
    max_examples = cfg.consistency.max_reported_keys if max_examples is None else max_examples
    total = missing = 0
    examples: list[Any] = []
    cast = _cast(key_ids(legacy, e, entity_name))
    after, first = None, True
    while True:
        with side.cursor() as cur:
            sqlfiles.run(cur, "rollback/keys_batch.sql", {"table": _t(e.old_table), "key": e.key},
                         {"first_batch": first, "after": after, "batch_size": size})
            keys = [r[0] for r in cur.fetchall()]
        side.rollback()
        if not keys:
            break
        first, after = False, keys[-1]
        total += len(keys)
        with legacy.cursor() as cur:
            sqlfiles.run(cur, "rollback/old_rows_by_keys.sql",
                         {"table": _t(e.old_table), "key": e.key, "columns": sql.Identifier(e.key), **cast},
                         {"keys": keys})
            present = {r[0] for r in cur.fetchall()}
        legacy.rollback()
        gone = [k for k in keys if k not in present]
        deleted_gone += sum(1 for k in gone if str(k) in excused)
        gone = [k for k in gone if str(k) not in excused]
        missing += len(gone)
        examples += gone[: max(0, max_examples - len(examples))]
    return total, missing, examples, deleted_gone


# --- deletes: old rows whose new row is gone ----------------------------------------------------
_MOD = 1 << 128


def row_hash(key: Any, values: Mapping[str, Any] | None, columns: list[str]) -> int:
    """One row's hash; summed mod 2**128 it is a checksum of a set of rows, whatever the walk order."""
    return int.from_bytes(hashlib.md5(_line(key, dict(values) if values is not None else None, columns),
                                      usedforsecurity=False).digest(), "big")


def _text(value: Any) -> str:
    """A value as Postgres ``::text`` writes it (booleans as true/false), for scope and mark tests."""
    return str(value).lower() if isinstance(value, bool) else str(value)


class OldScope:
    """Which old rows must have a live new row: in the entity's scope, not marked deleted.

    The SQL side (``identifiers``/``params`` for ``old_scope_batch.sql`` and the delete/mark
    statements) and the Python side (:meth:`holds` on reverse-mapped values) of one predicate.
    """

    def __init__(self, entity) -> None:
        self.entity = entity
        self.scope = entity.scope
        self.mark = entity.rollback_deletes if entity.rollback_deletes.action == "mark" else None

    def identifiers(self) -> dict[str, Any]:
        e = self.entity
        return {"table": _t(e.old_table), "key": e.key,
                "scope_column": self.scope.column if self.scope else e.key,
                "mark_column": self.mark.column if self.mark else e.key}

    def params(self) -> dict[str, Any]:
        return {"all_rows": self.scope is None, "scope_values": list(self.scope.values) if self.scope else [],
                "no_mark": self.mark is None, "mark_value": self.mark.value if self.mark else ""}

    def knowable(self, old_columns: list[str]) -> bool:
        """Can :meth:`holds` decide from the mapped columns (the scope and mark columns are mapped)?"""
        needed = {c for c in ((self.scope.column if self.scope else None), (self.mark.column if self.mark else None))
                  if c is not None}
        return needed <= set(old_columns)

    def holds(self, values: Mapping[str, Any]) -> bool:
        if self.scope is not None and _text(values.get(self.scope.column)) not in self.scope.values:
            return False
        return not (self.mark is not None and values.get(self.mark.column) is not None
                    and _text(values.get(self.mark.column)) == self.mark.value)


@dataclass
class OrphanStats:
    """The old -> new walk: in-scope old rows, those no live new row links to, a checksum of all."""

    entity: str
    scope_rows_old: int = 0
    orphans: int = 0
    keys: list[Any] = field(default_factory=list)   # orphan keys, at most ``keep`` of them
    scope_checksum_old: str = ""
    batches: int = 0

    def as_dict(self, examples: int = 20) -> dict[str, Any]:
        return {"entity": self.entity, "scope_rows_old": self.scope_rows_old, "orphans": self.orphans,
                "orphan_examples": [str(k) for k in self.keys[:examples]],
                "scope_checksum_old": self.scope_checksum_old, "batches": self.batches}


def find_orphans(cfg: MigrationConfig, entity_name: str, legacy, new, *, keep: int,
                 batch_size: int | None = None) -> OrphanStats:
    """Walk the old table's in-scope rows; collect (up to ``keep``) and count those without a live new row."""
    e = cfg.entities[entity_name]
    rev = ReverseMapping(e, entity_name)
    scope = OldScope(e)
    size = batch_size or cfg.backfill.batch_size
    stats = OrphanStats(entity_name)
    total = 0
    cast = _cast(key_ids(legacy, e, entity_name))  # the new legacy-id column holds old keys: same type
    after, first = None, True
    while True:
        with legacy.cursor() as cur:
            sqlfiles.run(cur, "rollback/old_scope_batch.sql",
                         {**scope.identifiers(), "columns": _list(rev.old_columns)},
                         {**scope.params(), "first_batch": first, "after": after, "batch_size": size})
            rows = _fetch_dicts(cur)
        legacy.rollback()
        if not rows:
            break
        first, after = False, rows[-1][e.key]
        stats.batches += 1
        stats.scope_rows_old += len(rows)
        keys = [r[e.key] for r in rows]
        with new.cursor() as cur:
            sqlfiles.run(cur, "rollback/linked_keys.sql",
                         {"table": _t(e.new_table), "legacy_id": e.legacy_id_column, **cast}, {"keys": keys})
            linked = {r[0] for r in cur.fetchall()}
        new.rollback()
        for r in rows:
            total = (total + row_hash(r[e.key], r, rev.old_columns)) % _MOD
            if r[e.key] not in linked:
                stats.orphans += 1
                if len(stats.keys) < keep:
                    stats.keys.append(r[e.key])
    stats.scope_checksum_old = f"{total:032x}"
    return stats


class TooManyDeletes(SyncError, Refused):
    """More old rows would be deleted/marked than ``cutover.rollback_max_deletes`` allows."""


def too_many(cfg: MigrationConfig, entity_name: str, orphans: int) -> str | None:
    limit = cfg.cutover.rollback_max_deletes
    if orphans <= limit:
        return None
    e = cfg.entities[entity_name]
    return (f"{entity_name}: {orphans} rows of {e.old_table} in scope have no live row in {e.new_table} (deleted "
            f"there after the cutover?), more than cutover.rollback_max_deletes = {limit}; check that the new "
            "table is the right one and complete, then raise the limit to roll them back")


def removal_sql(cfg: MigrationConfig, entity_name: str, legacy=None) -> tuple[str, dict[str, Any]]:
    """The SQL file and identifiers that delete or mark an entity's orphans (with ``legacy``: also the
    key's type, which rendering or running the file needs)."""
    e = cfg.entities[entity_name]
    scope = OldScope(e)
    name = "rollback/mark_old_rows.sql" if scope.mark else "rollback/delete_old_rows.sql"
    cast = _cast(key_ids(legacy, e, entity_name)) if legacy is not None else {}
    return name, {**scope.identifiers(), **cast}


def remove_orphans(cfg: MigrationConfig, entity_name: str, legacy, keys: list[Any],
                   record: Callable[[Any, list[Any], list[Any]], None]) -> list[Any]:
    """Delete (or mark) ``keys`` in one transaction; ``record(conn, removed, rows)`` writes the evidence in it.

    ``rows`` are the old rows as they were before the delete (as marked, for mark). All or nothing:
    a row other tables still reference (delete mode) fails the whole entity with the constraint
    named, and nothing is removed.
    """
    e = cfg.entities[entity_name]
    if not keys:
        return []
    if len(keys) > cfg.cutover.rollback_max_deletes:
        raise TooManyDeletes(too_many(cfg, entity_name, len(keys)))
    name, idents = removal_sql(cfg, entity_name, legacy)
    try:
        with legacy.cursor() as cur:
            sqlfiles.run(cur, name, idents, {**OldScope(e).params(), "keys": list(keys)})
            got = sorted(cur.fetchall(), key=lambda r: r[0])
        removed = [r[0] for r in got]
        record(legacy, removed, [r[1] for r in got])
        legacy.commit()
    except psycopg2.errors.ForeignKeyViolation as exc:
        legacy.rollback()
        diag = exc.diag
        raise SyncError(
            f"{entity_name}: cannot delete rows of {e.old_table} whose new row was deleted after the cutover: "
            f"{diag.message_detail or exc} (constraint {diag.constraint_name} on {diag.table_name}); nothing was "
            f"deleted. Set entities.{entity_name}.rollback_deletes to {{action: mark, column: ..., value: ...}} "
            "(as the old application marks a deleted row) or remove the referencing rows first") from exc
    except Exception:
        legacy.rollback()
        raise
    return removed
