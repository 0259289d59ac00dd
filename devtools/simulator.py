"""Application simulator: the seed's TypeScript listing logic (phases 2, 4, 5) as a Python client.

Why: the gates and dashboards judge the migration by what the application reports (dual-write
success, shadow-read mismatches, per-path error rates), so the demo and the tests need an
application that honours the feature flags exactly as the seed describes and can be told to fail.

Semantics (one request at a time; flags come from ``ControlClient.flags()``, cached):

* ``maintenance_mode``: writes raise ``MaintenanceModeError``; reads keep working.
* Before write cutover the old table is authoritative. With ``dual_write_enabled`` the committed old
  row is mapped (config ``columns``: ``map`` and ``lookup``) and upserted into the new table by
  ``legacy_id_column``, keeping a row whose version column is newer (the backfill's rule); a failed
  dual-write is recorded and never fails the request (seed 2.1).
* ``write_to_new``: the new table is written first and is authoritative. With ``keep_old_sync`` the
  old table is written too and the new row is linked to it (seed 5.3); a failure there is a warning.
  The secondary write in either direction is what ``dual_write_stats`` counts.
* Reads go to the new table with probability ``read_new_pct`` (seed 5.2). With probability
  ``shadow_read_pct`` the other side is read as well and compared (seed 4.1); the cohort is
  ``read_new_<pct>``, so mismatch rates can be told apart per rollout step.
* ``path_stats`` counts the authoritative (user-facing) write and the served read only.

A listing is addressed by ``ListingRef(old_id, new_id)``; a bare int is an old id. Listings created
after write cutover without ``keep_old_sync`` have no old id and are read from the new table.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg2
from psycopg2 import sql

from devtools import simulator_mapping as sm
from devtools.simulator_mapping import EntityMapping, corrupt
from migration_engine import sqlfiles
from migration_engine.appclient import ControlClient
from migration_engine.config import ColumnMap, Entity, MigrationConfig

log = logging.getLogger(__name__)

MISSING = "<missing>"


class SimulatorError(RuntimeError):
    """Base class of the simulator's own errors."""


class MaintenanceModeError(SimulatorError):
    """Writes are refused while ``maintenance_mode`` is on (rollback scenario 3)."""


class ListingNotFoundError(SimulatorError):
    """The listing does not exist on the authoritative side."""


class InjectedFault(SimulatorError):
    """A failure the simulator was told to produce (``Faults``)."""


def _rate(value: float, name: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be between 0 and 1, got {value!r}")
    return value


@dataclass(frozen=True)
class Faults:
    """Failures to inject, as probabilities per request (0-1)."""

    dual_write_failure_rate: float = 0.0  # the secondary write fails (nothing is written there)
    new_read_error_rate: float = 0.0      # a read served from the new table fails
    field_mismatch_rate: float = 0.0      # the secondary write stores a corrupted mismatch_column
    mismatch_column: str = "title"        # new-table column name (its old counterpart on the old side)
    new_path_latency_ms: float = 0.0      # added to every new-table read
    invoice_error_rate: float = 0.0       # an invoice state transition fails (metric alert)
    payment_error_rate: float = 0.0       # a payment fails (metric alert)
    cross_db_latency_ms: float = 0.0      # added to every cross-database query (shadow comparison)

    def __post_init__(self) -> None:
        _rate(self.invoice_error_rate, "invoice_error_rate")
        _rate(self.payment_error_rate, "payment_error_rate")
        if self.cross_db_latency_ms < 0:
            raise ValueError("cross_db_latency_ms must be >= 0")
        _rate(self.dual_write_failure_rate, "dual_write_failure_rate")
        _rate(self.new_read_error_rate, "new_read_error_rate")
        _rate(self.field_mismatch_rate, "field_mismatch_rate")
        if self.new_path_latency_ms < 0:
            raise ValueError("new_path_latency_ms must be >= 0")


@dataclass(frozen=True)
class ListingRef:
    old_id: Any | None
    new_id: Any | None = None


@dataclass(frozen=True)
class ShadowResult:
    matched: bool
    cohort: str
    diffs: dict


@dataclass(frozen=True)
class ListingRead:
    path: str                   # "old" or "new": the side that served the read
    row: dict | None            # that side's row (its own column names), None if not found
    shadow: ShadowResult | None = None


class MarketplaceApp:
    """The application: creates, updates and reads one entity (listings) honouring the flags."""

    def __init__(
        self,
        legacy_connect: Callable[[], Any],
        new_connect: Callable[[], Any],
        cfg_or_entity: MigrationConfig | Entity,
        *,
        control: ControlClient,
        faults: Faults | None = None,
        rng: random.Random | None = None,
        entity_name: str = "listings",
        touch_columns: tuple[str, ...] = ("updated_at",),
        version_column: str | None = "",
    ) -> None:
        """``version_column`` (new-table column): the dual-write keeps a row with a newer version, the
        backfill's conflict rule; default: the config's ``backfill.version_column``; None: always replace."""
        is_cfg = isinstance(cfg_or_entity, MigrationConfig)
        entity = cfg_or_entity.entities[entity_name] if is_cfg else cfg_or_entity
        if version_column == "":
            version_column = getattr(cfg_or_entity.backfill, "version_column", None) if is_cfg else None
        self.entity = entity
        self.entity_name = entity_name
        self.mapping = EntityMapping(entity, touch_columns)
        self.control = control
        self.faults = faults or Faults()
        self.rng = rng or random.Random()
        self._connect = {"old": legacy_connect, "new": new_connect}
        self._conns: dict[str, Any] = {}
        self._lookup_cache: dict[tuple[str, Any], Any] = {}
        if self.faults.mismatch_column not in self.mapping.new_columns and self.faults.field_mismatch_rate:
            raise ValueError(f"mismatch_column {self.faults.mismatch_column!r} is not a mapped new column")
        if version_column is not None and version_column not in self.mapping.new_columns:
            raise ValueError(f"version_column {version_column!r} is not a mapped new column")
        self.version_column = version_column

    # -- connections -------------------------------------------------------------------------
    @contextmanager
    def _tx(self, side: str) -> Iterator[Any]:
        """One transaction on the old or new database; a broken connection is replaced next time."""
        conn = self._conns.get(side)
        if conn is None or conn.closed:
            conn = self._conns[side] = self._connect[side]()
        try:
            with conn.cursor() as cur:
                yield cur
            conn.commit()
        except BaseException:
            try:
                conn.rollback()
            except psycopg2.Error:
                conn.close()
            if conn.closed:
                self._conns.pop(side, None)
            raise

    def close(self) -> None:
        for conn in self._conns.values():
            if not conn.closed:
                conn.close()
        self._conns.clear()

    # -- helpers -----------------------------------------------------------------------------
    def flags(self) -> dict[str, Any]:
        return self.control.flags()

    def _chance(self, probability: float) -> bool:
        return probability > 0 and self.rng.random() < probability

    def _lookup(self, cur, column: ColumnMap, value: Any) -> Any:
        key = (column.new, value)
        if key in self._lookup_cache:
            return self._lookup_cache[key]
        lk = column.lookup
        row = sm.run(cur, "simulator/lookup_value.sql",
                     {"table": (lk.table.schema_name, lk.table.table), "match": lk.match, "value": lk.value},
                     {"match_value": value})
        result = None if row is None else row[lk.value]
        if result is not None:
            self._lookup_cache[key] = result
        return result

    def _table(self, side: str) -> tuple[str, str]:
        t = self.entity.old_table if side == "old" else self.entity.new_table
        return (t.schema_name, t.table)

    def _insert(self, cur, side: str, values: Mapping[str, Any]) -> dict:
        cols = list(values)
        returning = self.mapping.old_returning if side == "old" else self.mapping.new_returning
        return sm.run(cur, "simulator/insert_row.sql",
                      {"table": self._table(side), "columns": sm.idents(cols),
                       "values": sm.placeholders(len(cols)), "returning": sm.idents(returning)},
                      sm.bind([values[c] for c in cols]))

    def _update(self, cur, side: str, match: str, match_value: Any, values: Mapping[str, Any]) -> dict | None:
        touch = self.mapping.touch_old if side == "old" else self.mapping.touch_new
        cols = [c for c in values if c not in touch]
        if not cols and not touch:
            raise ValueError("nothing to update")
        returning = self.mapping.old_returning if side == "old" else self.mapping.new_returning
        return sm.run(cur, "simulator/update_row.sql",
                      {"table": self._table(side), "match": match, "columns": sm.idents(cols + touch),
                       "values": sm.placeholders(len(cols), [sql.SQL("now()")] * len(touch)),
                       "returning": sm.idents(returning)},
                      sm.bind([values[c] for c in cols], match_value=match_value))

    def _select(self, side: str, match: str, match_value: Any) -> dict | None:
        returning = self.mapping.old_returning if side == "old" else self.mapping.new_returning
        with self._tx(side) as cur:
            return sm.run(cur, "simulator/select_row.sql",
                          {"table": self._table(side), "match": match, "columns": sm.idents(returning)},
                          {"match_value": match_value})

    def _timed(self, operation: str, path: str, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(cursor)`` in one transaction on ``path`` and record it in path_stats."""
        start = time.perf_counter()
        try:
            with self._tx(path) as cur:
                result = fn(cur)
        except Exception:
            self.control.record_request(self.entity_name, operation=operation, path=path, ok=False,
                                        latency_ms=(time.perf_counter() - start) * 1000)
            raise
        self.control.record_request(self.entity_name, operation=operation, path=path, ok=True,
                                    latency_ms=(time.perf_counter() - start) * 1000)
        return result

    def _write_flags(self) -> dict[str, Any]:
        flags = self.flags()
        if flags["maintenance_mode"]:
            raise MaintenanceModeError("maintenance mode is on: writes are refused")
        return flags

    def _maybe_corrupt(self, values: dict[str, Any], column: str | None) -> None:
        if self._chance(self.faults.field_mismatch_rate) and column in values:
            values[column] = corrupt(values[column])

    # -- writes ------------------------------------------------------------------------------
    def create(self, values: Mapping[str, Any]) -> ListingRef:
        """Create from old-column values (the application's API speaks the old model)."""
        self.mapping.check_old_values(values)
        flags = self._write_flags()
        if flags["write_to_new"]:
            return self._create_new_first(dict(values), flags)
        row = self._timed("write", "old", lambda cur: self._insert(cur, "old", values))
        new_id = self._dual_write(row) if flags["dual_write_enabled"] else None
        return ListingRef(row[self.entity.key], new_id)

    def create_listing(self, tenant_id: Any, title: str, *, description: str | None = None,
                       price_cents: int = 1000, status: str = "ACTIVE") -> ListingRef:
        return self.create({"tenant_id": tenant_id, "title": title, "description": description,
                            "price_cents": price_cents, "status": status})

    def update(self, ref: ListingRef | Any, values: Mapping[str, Any]) -> ListingRef:
        """Change old-column values of one listing; touched columns (updated_at) get now()."""
        ref = ref if isinstance(ref, ListingRef) else ListingRef(ref)
        self.mapping.check_old_values(values)
        flags = self._write_flags()
        if flags["write_to_new"]:
            return self._update_new_first(ref, dict(values), flags)
        if ref.old_id is None:
            raise ListingNotFoundError(f"{ref} has no row in the old table, which is authoritative")
        row = self._timed("write", "old", lambda cur: self._update(cur, "old", self.entity.key, ref.old_id, values))
        if row is None:
            raise ListingNotFoundError(f"{self.entity_name} {ref.old_id} not found")
        new_id = self._dual_write(row) if flags["dual_write_enabled"] else ref.new_id
        return ListingRef(ref.old_id, new_id)

    def update_listing(self, ref: ListingRef | Any, **fields: Any) -> ListingRef:
        return self.update(ref, fields)

    def _secondary(self, direction: str, fn: Callable[[], Any]) -> Any:
        """A dual-write (or keep_old_sync write): recorded, logged, never raised (seed 2.1, 5.3)."""
        start = time.perf_counter()
        try:
            if self._chance(self.faults.dual_write_failure_rate):
                raise InjectedFault(f"injected {direction} failure")
            result = fn()
        except Exception as exc:  # noqa: BLE001 - the primary write succeeded; this must not fail it
            self.control.record_dual_write(self.entity_name, ok=False,
                                           latency_ms=(time.perf_counter() - start) * 1000)
            (log.debug if isinstance(exc, InjectedFault) else log.warning)("%s failed: %s", direction, exc)
            return None
        self.control.record_dual_write(self.entity_name, ok=True, latency_ms=(time.perf_counter() - start) * 1000)
        return result

    def _dual_write(self, old_row: dict) -> Any:
        """Upsert the committed old row into the new table; the new key, or None if not written."""
        legacy_id = old_row[self.entity.key]

        def write() -> Any:
            with self._tx("new") as cur:
                values = self.mapping.to_new(old_row, lambda c, v: self._lookup(cur, c, v))
                self._maybe_corrupt(values, self.faults.mismatch_column)
                cols = list(values)
                row = sm.run(cur, "simulator/upsert_by_legacy_id.sql",
                             {"table": self._table("new"), "legacy_id": self.entity.legacy_id_column,
                              "columns": sm.idents(cols), "values": sm.placeholders(len(cols)),
                              "excluded": sql.SQL(", ").join(sql.Identifier("excluded", c) for c in cols),
                              "version": self.version_column or self.entity.legacy_id_column,
                              "returning": sql.Identifier(self.entity.new_key)},
                             sm.bind([values[c] for c in cols], legacy_id=legacy_id,
                                     always_replace=self.version_column is None))
                return None if row is None else row[self.entity.new_key]  # None: a newer row is kept

        return self._secondary("dual-write", write)

    def _create_new_first(self, values: dict[str, Any], flags: dict[str, Any]) -> ListingRef:
        def insert(cur) -> dict:
            return self._insert(cur, "new", self.mapping.to_new(values, lambda c, v: self._lookup(cur, c, v)))

        row = self._timed("write", "new", insert)
        new_id = row[self.entity.new_key]
        if not flags["keep_old_sync"]:
            return ListingRef(None, new_id)

        def sync() -> Any:
            old_values = {**self.mapping.to_old(row), **values}
            self._maybe_corrupt(old_values, self.mapping.old_name(self.faults.mismatch_column))
            with self._tx("old") as cur:
                old_id = self._insert(cur, "old", old_values)[self.entity.key]
            with self._tx("new") as cur:
                sm.run(cur, "simulator/link_legacy_id.sql",
                       {"table": self._table("new"), "legacy_id": self.entity.legacy_id_column,
                        "new_key": self.entity.new_key},
                       {"legacy_id": old_id, "new_key": new_id})
            return old_id

        return ListingRef(self._secondary("keep-old-sync", sync), new_id)

    def _update_new_first(self, ref: ListingRef, values: dict[str, Any], flags: dict[str, Any]) -> ListingRef:
        if ref.new_id is not None:
            match, match_value = self.entity.new_key, ref.new_id
        else:
            match, match_value = self.entity.legacy_id_column, ref.old_id

        def update(cur) -> dict | None:
            new_values = self.mapping.to_new(values, lambda c, v: self._lookup(cur, c, v))
            return self._update(cur, "new", match, match_value, new_values)

        row = self._timed("write", "new", update)
        if row is None:
            raise ListingNotFoundError(f"{self.entity_name} {ref} not found in the new table")
        old_id = ref.old_id if ref.old_id is not None else row[self.entity.legacy_id_column]
        if flags["keep_old_sync"] and old_id is not None:
            def sync() -> None:
                touched = {k: v for k, v in self.mapping.to_old(row).items() if k in self.mapping.touch_old}
                old_values = {**values, **touched}  # same timestamps on both sides
                self._maybe_corrupt(old_values, self.mapping.old_name(self.faults.mismatch_column))
                with self._tx("old") as cur:
                    cols = list(old_values)
                    found = sm.run(cur, "simulator/update_row.sql",
                                   {"table": self._table("old"), "match": self.entity.key,
                                    "columns": sm.idents(cols), "values": sm.placeholders(len(cols)),
                                    "returning": sql.Identifier(self.entity.key)},
                                   sm.bind([old_values[c] for c in cols], match_value=old_id))
                if found is None:
                    raise ListingNotFoundError(f"old row {old_id} is missing")

            self._secondary("keep-old-sync", sync)
        return ListingRef(old_id, row[self.entity.new_key])

    # -- reads -------------------------------------------------------------------------------
    def _read_new(self, ref: ListingRef) -> dict | None:
        if self.faults.new_path_latency_ms:
            time.sleep(self.faults.new_path_latency_ms / 1000)
        if ref.new_id is not None:
            return self._select("new", self.entity.new_key, ref.new_id)
        return self._select("new", self.entity.legacy_id_column, ref.old_id)

    def get_listing(self, ref: ListingRef | Any) -> ListingRead:
        """Serve one read from the routed path; injected errors and DB errors are recorded, then raised."""
        ref = ref if isinstance(ref, ListingRef) else ListingRef(ref)
        flags = self.flags()
        pct = int(flags["read_new_pct"])
        routed_new = self.rng.random() * 100 < pct
        path = "new" if routed_new or ref.old_id is None else "old"
        start = time.perf_counter()
        try:
            if path == "new":
                if self._chance(self.faults.new_read_error_rate):
                    raise InjectedFault("injected new-path read error")
                row = self._read_new(ref)
            else:
                row = self._select("old", self.entity.key, ref.old_id)
        except Exception:
            self.control.record_request(self.entity_name, operation="read", path=path, ok=False,
                                        latency_ms=(time.perf_counter() - start) * 1000)
            raise
        served_ms = (time.perf_counter() - start) * 1000
        self.control.record_request(self.entity_name, operation="read", path=path, ok=True, latency_ms=served_ms)
        shadow = None
        shadow_pct = int(flags["shadow_read_pct"])
        if ref.old_id is not None and shadow_pct and self.rng.random() * 100 < shadow_pct:
            shadow = self._shadow(ref, path, row, cohort=f"read_new_{pct}", served_ms=served_ms)
        return ListingRead(path, row, shadow)

    def _shadow(self, ref: ListingRef, path: str, served: dict | None, cohort: str,
                served_ms: float | None = None) -> ShadowResult | None:
        """Read the other side too and compare (seed 4.1); a failed shadow read is only logged.

        Reports the stats contract's named operations: ``shadow_read.old`` / ``shadow_read.new`` (each
        side's read time for the same key - the pre-cutover performance gate compares them) and
        ``cross_db_query`` (the whole comparison across both databases - the seed's cross-DB alert).
        """
        started = time.perf_counter()
        try:
            if self.faults.cross_db_latency_ms:
                time.sleep(self.faults.cross_db_latency_ms / 1000)
            other = time.perf_counter()
            if path == "old":
                if self.faults.new_path_latency_ms:
                    time.sleep(self.faults.new_path_latency_ms / 1000)
                old_row, new_row = served, self._select("new", self.entity.legacy_id_column, ref.old_id)
            else:
                old_row, new_row = self._select("old", self.entity.key, ref.old_id), served
            other_ms = (time.perf_counter() - other) * 1000
            if served_ms is not None:
                self.control.record_operation(f"shadow_read.{path}", ok=True, latency_ms=served_ms)
                self.control.record_operation(f"shadow_read.{'new' if path == 'old' else 'old'}", ok=True,
                                              latency_ms=other_ms)
            if new_row is None and (old_row is None or not self.mapping.in_scope(old_row)):
                return None  # nothing to compare: absent, or out of the migration's scope by design
            with self._tx("new") as cur:
                diffs = self.diff(old_row, new_row, lambda c, v: self._lookup(cur, c, v))
        except Exception as exc:  # noqa: BLE001 - shadow reads must never fail the request
            log.warning("shadow read of %s %s failed: %s", self.entity_name, ref.old_id, exc)
            return None
        self.control.record_shadow_read(self.entity_name, matched=not diffs, cohort=cohort,
                                        key=ref.old_id, diffs=diffs)
        self.control.record_operation("cross_db_query", ok=True, latency_ms=(time.perf_counter() - started) * 1000)
        return ShadowResult(not diffs, cohort, diffs)

    # -- the marketplace's other critical operations (seed alert table) ------------------------------
    def checkout(self, ref: ListingRef | Any) -> None:
        """An order on a listing: an invoice state transition, then the payment. Both are reported as
        named operations (``invoice_state_transition``, ``payment_processing``); failures are injected
        with ``Faults.invoice_error_rate`` / ``payment_error_rate``. Reads the listing from its routed path."""
        self.get_listing(ref)
        for operation, rate in (("invoice_state_transition", self.faults.invoice_error_rate),
                                ("payment_processing", self.faults.payment_error_rate)):
            start = time.perf_counter()
            failed = self._chance(rate)
            self.control.record_operation(operation, ok=not failed, latency_ms=(time.perf_counter() - start) * 1000)
            if failed:
                raise InjectedFault(f"injected {operation} error")

    def diff(self, old_row: dict | None, new_row: dict | None,
             lookup: Callable[[ColumnMap, Any], Any]) -> dict[str, dict[str, Any]]:
        """``{new_column: {"old": expected from the old row, "new": actual}}`` for each difference."""
        if old_row is None or new_row is None:
            return {"_row": {"old": MISSING if old_row is None else "present",
                             "new": MISSING if new_row is None else "present"}}
        expected = self.mapping.to_new(old_row, lookup)
        return {col: {"old": expected.get(col), "new": new_row.get(col)}
                for col in self.mapping.new_columns if expected.get(col) != new_row.get(col)}

    # -- workload support --------------------------------------------------------------------
    def sample_refs(self, limit: int = 1000) -> list[ListingRef]:
        """Recent in-scope listings of the old table, to read and update."""
        scope = self.entity.scope
        with self._tx("old") as cur:
            sqlfiles.run(cur, "simulator/sample_keys.sql",
                         {"table": self._table("old"), "key": self.entity.key,
                          "scope_column": scope.column if scope else self.entity.key},
                         {"all_rows": scope is None, "scope_values": list(scope.values) if scope else [],
                          "row_limit": limit})
            return [ListingRef(r[0]) for r in cur.fetchall()]

    def sample_values(self, old_column: str, limit: int = 100, scan: int = 5000) -> list[Any]:
        """Distinct values of an old column among recent rows (e.g. tenant ids for new listings)."""
        with self._tx("old") as cur:
            sqlfiles.run(cur, "simulator/sample_values.sql",
                         {"table": self._table("old"), "column": old_column, "key": self.entity.key},
                         {"scan_limit": scan, "row_limit": limit})
            return [r[0] for r in cur.fetchall()]


if __name__ == "__main__":  # python -m devtools.simulator ...
    import sys

    from devtools.simulator_cli import main

    sys.exit(main())
