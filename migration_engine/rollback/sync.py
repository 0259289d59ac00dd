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
the application did with its timestamps; it costs one read of both tables. Rows are never deleted
from the old table: a row deleted in the new table after the cutover comes back (no row lost).

``run(apply=False)`` is the verification: the same walk, counting differences and computing a
digest of each side over the compared values (equal digests = identical content).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Any

from psycopg2 import sql

from migration_engine import sqlfiles
from migration_engine.config import MigrationConfig, TableRef
from migration_engine.cutover.activity import qualified
from migration_engine.errors import MigrationError
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
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def differences(self) -> int:
        return self.updated + self.inserted + self.unlinked

    def as_dict(self) -> dict[str, Any]:
        return {"entity": self.entity, "new_rows": self.new_rows, "unchanged": self.unchanged,
                "updated": self.updated, "inserted": self.inserted, "linked_now": self.linked_now,
                "unlinked": self.unlinked, "batches": self.batches, "digest_new": self.digest_new,
                "digest_old": self.digest_old, "examples": self.examples}


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

    # -- reads --------------------------------------------------------------------------------
    def _new_batch(self, after: Any, first: bool) -> list[dict[str, Any]]:
        e = self.entity
        with self.new.cursor() as cur:
            sqlfiles.run(cur, "rollback/new_rows_batch.sql",
                         {"table": _t(e.new_table), "new_key": e.new_key, "legacy_id": e.legacy_id_column,
                          "columns": _list(self.rev.new_columns)},
                         {"first_batch": first, "after": after, "batch_size": self.batch_size})
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
        with self.legacy.cursor() as cur:
            sqlfiles.run(cur, "rollback/old_rows_by_keys.sql",
                         {"table": _t(e.old_table), "key": e.key, "columns": _list(self.rev.old_columns)},
                         {"keys": list(keys)})
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
        if seq is None:
            raise SyncError(f"{self.name}: {self.entity.old_table}.{self.entity.key} has no sequence; cannot give "
                            "rows created after the cutover an old key")
        for _ in range(10_000):
            with self.legacy.cursor() as cur:
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
            for r in linked:
                key, want = r[e.legacy_id_column], expected[r[e.new_key]]
                have = old.get(key)
                diff = self.rev.differs(want, have)
                h_new.update(_line(key, want, self.rev.old_columns))
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
        log.info("%s %s: %s", "sync" if apply else "verify", self.name, stats.as_dict())
        return stats

    def _example(self, stats: SyncStats, example: dict[str, Any]) -> None:
        if len(stats.examples) < self.max_examples:
            stats.examples.append({k: str(v) for k, v in example.items()})


def _line(key: Any, values: dict[str, Any] | None, columns: list[str]) -> bytes:
    if values is None:
        return f"{key}|<missing>\n".encode()
    return (f"{key}|" + "|".join(repr(str(values.get(c))) if values.get(c) is not None else "NULL"
                                 for c in columns) + "\n").encode()


def missing_keys(cfg: MigrationConfig, entity_name: str, side, legacy, *, batch_size: int | None = None,
                 max_examples: int | None = None) -> tuple[int, int, list[Any]]:
    """(rows in the side copy, of them missing from the live old table, example keys)."""
    e = cfg.entities[entity_name]
    size = batch_size or cfg.backfill.batch_size
    max_examples = cfg.consistency.max_reported_keys if max_examples is None else max_examples
    total = missing = 0
    examples: list[Any] = []
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
                         {"table": _t(e.old_table), "key": e.key, "columns": sql.Identifier(e.key)},
                         {"keys": keys})
            present = {r[0] for r in cur.fetchall()}
        legacy.rollback()
        gone = [k for k in keys if k not in present]
        missing += len(gone)
        examples += gone[: max(0, max_examples - len(examples))]
    return total, missing, examples
