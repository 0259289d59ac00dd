"""Backfill run state in the control schema: passes (``backfill_runs``) and ranges with checkpoints.

All functions take a psycopg2 connection to the legacy database (where the control schema lives)
and commit only where they say so, so callers can group writes with ledger entries.

Key bounds are stored as text (any key type, see ``migration_engine/keys.py``) together with the
pass's ``key_type``; they read back as key values: ``int`` for an integer key, else the text.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from migration_engine import keys, sqlfiles


@dataclass(frozen=True)
class RunRow:
    id: int
    entity: str
    status: str
    key_column: str
    key_min: Any
    key_max: Any
    rows_total: int
    parallelism: int
    settings: dict
    dag_id: str | None
    dag_run_id: str | None
    created_at: datetime
    key_type: str = "int8"  # the key's base type (pg_type name) when the pass was planned


@dataclass(frozen=True)
class RangeRow:
    run_id: int
    range_no: int
    key_lo: Any   # None: the open first range of a non-integer key
    key_hi: Any
    last_key: Any
    status: str
    rows_total: int
    rows_read: int
    rows_written: int
    rows_deleted: int
    batches: int
    retries: int
    batch_size: int | None
    rows_per_second: float | None
    eta_seconds: float | None
    pause_reason: str | None
    paused_seconds: float
    worker: str | None
    error: str | None
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None

    @property
    def done(self) -> bool:
        return self.status == "done"

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _one(cur) -> tuple | None:
    return cur.fetchone()


def _value(key_type: str, text: str | None) -> Any:
    """A stored bound as a key value (``int`` for an integer key)."""
    if text is None:
        return None
    return int(text) if keys.kind_of(key_type) == "integer" else text


def _run(row: tuple | None) -> RunRow | None:
    if row is None:
        return None
    r = RunRow(*row)
    return dataclasses.replace(r, key_min=_value(r.key_type, r.key_min), key_max=_value(r.key_type, r.key_max))


def _range(row: tuple) -> RangeRow:
    *values, key_type = row
    r = RangeRow(*values)
    return dataclasses.replace(r, key_lo=_value(key_type, r.key_lo), key_hi=_value(key_type, r.key_hi),
                               last_key=_value(key_type, r.last_key))


def open_run(conn, schema: str, entity: str) -> RunRow | None:
    """The entity's open pass, row-locked until the caller commits."""
    with conn.cursor() as cur:
        sqlfiles.run(cur, "backfill/run_open_get.sql", {"schema": schema}, {"entity": entity})
        return _run(_one(cur))


def tables_exist(conn, schema: str) -> bool:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "backfill/tables_exist.sql", params={"schema": schema})
        return bool(cur.fetchone()[0])


def peek_open_run(conn, schema: str, entity: str) -> RunRow | None:
    """The entity's open pass without locking it; None also when no pass was ever planned here."""
    if not tables_exist(conn, schema):
        return None
    with conn.cursor() as cur:
        sqlfiles.run(cur, "backfill/run_open_peek.sql", {"schema": schema}, {"entity": entity})
        return _run(_one(cur))


def get_run(conn, schema: str, run_id: int) -> RunRow | None:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "backfill/run_get.sql", {"schema": schema}, {"run_id": run_id})
        return _run(_one(cur))


def insert_run(conn, schema: str, *, entity: str, key_column: str, key_type: str, key_min: Any, key_max: Any,
               rows_total: int, parallelism: int, settings: dict, dag_id: str | None,
               dag_run_id: str | None) -> int:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "backfill/run_insert.sql", {"schema": schema}, {
            "entity": entity, "key_column": key_column, "key_type": key_type, "key_min": _text(key_min),
            "key_max": _text(key_max),
            "rows_total": rows_total, "parallelism": parallelism, "settings": json.dumps(settings, default=str),
            "dag_id": dag_id, "dag_run_id": dag_run_id})
        return cur.fetchone()[0]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def insert_ranges(conn, schema: str, run_id: int, ranges: list[tuple[Any, Any, int]]) -> None:
    """``ranges``: (key_lo, key_hi, rows_total), in key order; key_lo None = open first range."""
    with conn.cursor() as cur:
        sqlfiles.run(cur, "backfill/ranges_insert.sql", {"schema": schema}, {
            "run_id": run_id, "key_lo": [_text(r[0]) for r in ranges], "key_hi": [_text(r[1]) for r in ranges],
            "rows_total": [r[2] for r in ranges]})


def touch_run(conn, schema: str, run_id: int, dag_id: str | None, dag_run_id: str | None) -> None:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "backfill/run_touch.sql", {"schema": schema},
                     {"run_id": run_id, "dag_id": dag_id, "dag_run_id": dag_run_id})


def set_run_status(conn, schema: str, run_id: int, status: str) -> bool:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "backfill/run_set_status.sql", {"schema": schema}, {"run_id": run_id, "status": status})
        return cur.fetchone() is not None


def ranges(conn, schema: str, run_id: int, range_no: int | None = None) -> list[RangeRow]:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "backfill/ranges_get.sql", {"schema": schema}, {"run_id": run_id, "range_no": range_no})
        return [_range(r) for r in cur.fetchall()]


def get_range(conn, schema: str, run_id: int, range_no: int) -> RangeRow | None:
    found = ranges(conn, schema, run_id, range_no)
    return found[0] if found else None


def start_range(conn, schema: str, run_id: int, range_no: int, worker: str) -> None:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "backfill/range_start.sql", {"schema": schema},
                     {"run_id": run_id, "range_no": range_no, "worker": worker})


def checkpoint(conn, schema: str, run_id: int, range_no: int, *, prev_key: Any, last_key: Any, done: bool,
               rows_read: int, rows_written: int, rows_deleted: int, retries: int, batch_size: int,
               rows_per_second: float | None, eta_seconds: float | None) -> str | None:
    """Advance the high-water mark from ``prev_key`` (compare-and-set) to ``last_key``, or to key_hi
    when ``done``; returns the range's status, None when the mark was not at ``prev_key``."""
    with conn.cursor() as cur:
        sqlfiles.run(cur, "backfill/range_checkpoint.sql", {"schema": schema}, {
            "run_id": run_id, "range_no": range_no, "prev_key": _text(prev_key), "last_key": _text(last_key),
            "done": done, "rows_read": rows_read,
            "rows_written": rows_written, "rows_deleted": rows_deleted, "retries": retries,
            "batch_size": batch_size, "rows_per_second": rows_per_second, "eta_seconds": eta_seconds})
        row = cur.fetchone()
    return row[0] if row else None


def set_pause(conn, schema: str, run_id: int, range_no: int, reason: str | None, paused_seconds: float = 0.0
              ) -> None:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "backfill/range_pause.sql", {"schema": schema}, {
            "run_id": run_id, "range_no": range_no, "pause_reason": reason, "paused_seconds": paused_seconds})


def fail_range(conn, schema: str, run_id: int, range_no: int, error: str) -> None:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "backfill/range_fail.sql", {"schema": schema},
                     {"run_id": run_id, "range_no": range_no, "error": error[:2000]})


# -- the pass's shared latency-budget controller (backfill_controller, migration 010) -------------------
@dataclass(frozen=True)
class PassController:
    rows_per_second: float | None  # the pass's decided rate (None until the baseline is stored)
    state: dict  # RateController.to_dict()
    baseline: dict | None  # Baseline.as_dict(); None while the first range still measures it
    decisions: int
    due: bool  # no decision yet, or the last one at least the decision interval ago
    copying: int  # ranges running with a fresh heartbeat
    achieved: float  # their rows/s together (from their checkpoints)
    counts: dict  # decisions by kind since the last ledger entry
    ledger_due: bool
    baseline_by: int


def claim_baseline(conn, schema: str, run_id: int, range_no: int, stale_seconds: float) -> bool:
    """True: this range measures the pass's baseline (the first, or taking over a stale claim)."""
    with conn.cursor() as cur:
        sqlfiles.run(cur, "backfill/controller_claim.sql", {"schema": schema},
                     {"run_id": run_id, "range_no": range_no, "stale_seconds": stale_seconds})
        return cur.fetchone() is not None


def set_baseline(conn, schema: str, run_id: int, range_no: int, baseline: dict, state: dict, rate: float) -> bool:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "backfill/controller_baseline_set.sql", {"schema": schema},
                     {"run_id": run_id, "range_no": range_no, "baseline": json.dumps(baseline),
                      "state": json.dumps(state), "rate": rate})
        return cur.fetchone() is not None


def get_controller(conn, schema: str, run_id: int, *, interval_seconds: float, ledger_seconds: float,
                   stale_seconds: float) -> PassController | None:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "backfill/controller_get.sql", {"schema": schema},
                     {"run_id": run_id, "interval_seconds": interval_seconds, "ledger_seconds": ledger_seconds,
                      "stale_seconds": stale_seconds})
        row = cur.fetchone()
    if row is None:
        return None
    rate, state, baseline, decisions, due, copying, achieved, counts, ledger_due, by = row
    return PassController(None if rate is None else float(rate), state or {}, baseline, int(decisions), bool(due),
                          int(copying), float(achieved), counts or {}, bool(ledger_due), int(by))


def record_decision(conn, schema: str, run_id: int, range_no: int, *, seen: int, rate: float, state: dict,
                    decision: dict, counts: dict, ledgered: bool) -> bool:
    """Compare-and-set on ``seen`` decisions: False = another range decided first."""
    with conn.cursor() as cur:
        sqlfiles.run(cur, "backfill/controller_decide.sql", {"schema": schema},
                     {"run_id": run_id, "range_no": range_no, "seen": seen, "rate": rate,
                      "state": json.dumps(state), "decision": json.dumps(decision), "counts": json.dumps(counts),
                      "ledgered": ledgered})
        return cur.fetchone() is not None


def flush_decisions(conn, schema: str, run_id: int) -> tuple[dict, dict] | None:
    """(counts, last decision) not yet in the ledger, taken (counts start over); None if none."""
    with conn.cursor() as cur:
        sqlfiles.run(cur, "backfill/controller_flush.sql", {"schema": schema}, {"run_id": run_id})
        row = cur.fetchone()
    return None if row is None else (row[0], row[1])
