"""The helper an application embeds to honour the control-schema contract.

It reads feature flags (cached for ``flag_ttl`` seconds, so the database sees one query per TTL,
not one per request) and aggregates per-minute stats in memory, flushing them as additive upserts.
Several application instances can flush into the same minute: counts add up and p95 takes the
maximum (a conservative merge). Only psycopg2 and this package are needed; no Airflow.

    client = ControlClient(lambda: psycopg2.connect(dsn), schema="migration_control")
    if client.flag("dual_write_enabled"): ...
    client.record_dual_write("listings", ok=True, latency_ms=12.5)
    client.record_operation("payment_processing", ok=False, latency_ms=80)  # metric alerts
    client.flush()   # call every few seconds and at shutdown
"""

from __future__ import annotations

import json
import math
import re
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from migration_engine import sqlfiles
from migration_engine.latency import histogram

DEFAULT_FLAGS: dict[str, Any] = {
    "dual_write_enabled": False,
    "read_new_pct": 0,
    "shadow_read_pct": 0,
    "write_to_new": False,
    "keep_old_sync": False,
    "maintenance_mode": False,
}


# Named operations (``operation_stats.operation``): what ``alerts.metrics[].operation`` refers to.
OPERATION_RE = re.compile(r"^[a-z][a-z0-9_.]{0,62}$")


def minute_bucket(ts: float | None = None) -> datetime:
    ts = time.time() if ts is None else ts
    return datetime.fromtimestamp(ts - ts % 60, tz=UTC)


def p95(values: list[float]) -> float | None:
    """Nearest-rank 95th percentile (no interpolation: an observed value)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


class _Counter:
    __slots__ = ("n", "bad", "latencies")

    def __init__(self) -> None:
        self.n = 0
        self.bad = 0
        self.latencies: list[float] = []

    def add(self, ok: bool, latency_ms: float | None) -> None:
        self.n += 1
        self.bad += 0 if ok else 1
        if latency_ms is not None:
            self.latencies.append(latency_ms)


class ControlClient:
    def __init__(
        self,
        connect: Callable[[], Any],
        schema: str = "migration_control",
        *,
        instance: str | None = None,
        flag_ttl: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._connect = connect
        self._conn = None
        self.schema = schema
        self.instance = instance or socket.gethostname()
        self.flag_ttl = flag_ttl
        self._clock = clock
        self._flags: dict[str, Any] = dict(DEFAULT_FLAGS)
        self._flags_at = -math.inf
        self._lock = threading.Lock()
        self._dual: dict[tuple, _Counter] = defaultdict(_Counter)
        self._shadow: dict[tuple, _Counter] = defaultdict(_Counter)
        self._paths: dict[tuple, _Counter] = defaultdict(_Counter)
        self._ops: dict[tuple, _Counter] = defaultdict(_Counter)
        self._mismatch_examples: list[tuple] = []

    # -- connection ---------------------------------------------------------------------------
    def _cursor(self):
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        return self._conn.cursor()

    def close(self) -> None:
        self.flush()
        if self._conn is not None and not self._conn.closed:
            self._conn.close()

    # -- flags --------------------------------------------------------------------------------
    def flags(self, *, refresh: bool = False) -> dict[str, Any]:
        """Current flags, at most ``flag_ttl`` seconds old.

        If the control database is unreachable the last known values are kept (the application
        keeps working on its current path rather than flipping to defaults mid-migration).
        """
        now = self._clock()
        if refresh or now - self._flags_at >= self.flag_ttl:
            try:
                with self._cursor() as cur:
                    sqlfiles.run(cur, "control/flags_get.sql", {"schema": self.schema})
                    rows = cur.fetchall()
                self._conn.commit()
                self._flags = {**DEFAULT_FLAGS, **{name: value for name, value, _a, _b in rows}}
                self._flags_at = now
            except Exception:
                if self._conn is not None:
                    self._conn.rollback() if not self._conn.closed else None
                if self._flags_at == -math.inf:
                    raise
        return dict(self._flags)

    def flag(self, name: str) -> Any:
        return self.flags()[name]

    # -- stats --------------------------------------------------------------------------------
    def record_dual_write(self, entity: str, *, ok: bool, latency_ms: float | None = None) -> None:
        with self._lock:
            self._dual[(entity, minute_bucket(self._clock()))].add(ok, latency_ms)

    def record_shadow_read(self, entity: str, *, matched: bool, cohort: str = "all",
                           key: Any = None, diffs: dict | None = None) -> None:
        with self._lock:
            self._shadow[(entity, minute_bucket(self._clock()), cohort)].add(matched, None)
            if not matched and key is not None and len(self._mismatch_examples) < 100:
                self._mismatch_examples.append((entity, str(key), cohort, diffs or {}))

    def record_shadow_reads(self, entity: str, keys: list[Any], diffs: dict[Any, dict], *,
                            cohort: str = "all") -> None:
        """Record one shadow comparison per key from ``consistency.shadow.ShadowComparer.compare``
        (``diffs``: the keys that differ -> what differs), so the application compares with the
        config's transforms computed by the servers instead of a copy of the mapping of its own."""
        for key in keys:
            self.record_shadow_read(entity, matched=key not in diffs, cohort=cohort, key=key, diffs=diffs.get(key))

    def record_request(self, entity: str, *, operation: str, path: str, ok: bool,
                       latency_ms: float | None = None) -> None:
        if operation not in ("read", "write") or path not in ("old", "new"):
            raise ValueError(f"operation must be read|write and path old|new, got {operation}/{path}")
        with self._lock:
            self._paths[(entity, minute_bucket(self._clock()), operation, path)].add(ok, latency_ms)

    def record_operation(self, operation: str, *, ok: bool, latency_ms: float | None = None) -> None:
        """One named operation (``invoice_state_transition``, ``payment_processing``,
        ``cross_db_query``...): counted per minute for the metric alerts (``alerts.metrics``)."""
        if not isinstance(operation, str) or not OPERATION_RE.match(operation):
            raise ValueError(f"operation name must match {OPERATION_RE.pattern} (lowercase, digits, _ and .), "
                             f"got {operation!r}")
        with self._lock:
            self._ops[(operation, minute_bucket(self._clock()))].add(ok, latency_ms)

    def flush(self) -> None:
        """Write everything aggregated so far; on failure the data is kept for the next flush."""
        with self._lock:
            dual, self._dual = self._dual, defaultdict(_Counter)
            shadow, self._shadow = self._shadow, defaultdict(_Counter)
            paths, self._paths = self._paths, defaultdict(_Counter)
            ops, self._ops = self._ops, defaultdict(_Counter)
            examples, self._mismatch_examples = self._mismatch_examples, []
        if not (dual or shadow or paths or ops or examples):
            return
        ids = {"schema": self.schema}
        try:
            with self._cursor() as cur:
                for (entity, bucket), c in dual.items():
                    sqlfiles.run(cur, "control/dual_write_upsert.sql", ids, {
                        "entity": entity, "bucket": bucket, "instance": self.instance,
                        "attempts": c.n, "failures": c.bad, "p95_latency_ms": p95(c.latencies)})
                for (entity, bucket, cohort), c in shadow.items():
                    sqlfiles.run(cur, "control/shadow_read_upsert.sql", ids, {
                        "entity": entity, "bucket": bucket, "cohort": cohort, "instance": self.instance,
                        "reads_compared": c.n, "mismatches": c.bad})
                for (entity, bucket, operation, path), c in paths.items():
                    sqlfiles.run(cur, "control/path_stats_upsert.sql", ids, {
                        "entity": entity, "bucket": bucket, "operation": operation, "path": path,
                        "instance": self.instance, "requests": c.n, "errors": c.bad,
                        "p95_latency_ms": p95(c.latencies),
                        "latency_histogram": histogram(c.latencies) if c.latencies else None})
                for (operation, bucket), c in ops.items():
                    sqlfiles.run(cur, "control/operation_stats_upsert.sql", ids, {
                        "operation": operation, "bucket": bucket, "instance": self.instance,
                        "requests": c.n, "errors": c.bad, "p95_latency_ms": p95(c.latencies)})
                for entity, key, cohort, diffs in examples:
                    sqlfiles.run(cur, "control/shadow_mismatch_insert.sql", ids, {
                        "entity": entity, "entity_key": key, "cohort": cohort,
                        "diffs": json.dumps(diffs, default=str)})
            self._conn.commit()
        except Exception:
            if self._conn is not None and not self._conn.closed:
                self._conn.rollback()
            with self._lock:  # put it back so nothing is lost
                for store, old in ((self._dual, dual), (self._shadow, shadow), (self._paths, paths),
                                   (self._ops, ops)):
                    for k, c in old.items():
                        tgt = store[k]
                        tgt.n += c.n
                        tgt.bad += c.bad
                        tgt.latencies.extend(c.latencies)
                self._mismatch_examples = examples + self._mismatch_examples
            raise
