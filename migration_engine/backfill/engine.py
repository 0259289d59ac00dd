"""Copy one key range of one entity from the legacy database into the new one, batch by batch.

Per batch (set-based, no per-row work in Python):

1. legacy: ``COPY (SELECT <mapped columns> ... WHERE key > last_key ... ORDER BY key LIMIT n) TO
   STDOUT`` into memory (keyset page; value maps applied in the SELECT);
2. new: one index probe (does the key range hold new rows yet?). Empty (every range of a first
   pass): the direct path, that text ``COPY``'d straight into the target (the legacy SELECT of step 1
   resolved the lookups from a map of the lookup table read when the range started; a value the map
   lacks sends the batch the staged way). Otherwise, and for a range too big for a map: ``COPY``
   into a session temp table, then one ``INSERT ... SELECT`` joining the lookups (provider from
   tenant), ``ON CONFLICT (legacy id)`` newer-version-wins (a plain ``INSERT`` into an empty range).
   A dual-write that fills an empty range meanwhile fails the COPY / plain INSERT on the unique
   legacy id: rolled back, the batch is redone with the upsert. Committed;
3. legacy: if the key range lost rows since the read (a range count, same snapshot as the read),
   delete the vanished ones on the new side too (the application's dual-write delete could not
   see our uncommitted insert);
4. new (only if the probe found rows in the range): the ghost sweep - new rows with a legacy id in
   the batch's key range that the batch did not copy are locked, looked up on the legacy side, and
   deleted if their old row is gone (or out of scope while the new row is in scope): a row deleted
   in the old table *after* an earlier pass copied it (or while dual-write was off or failing) does
   not survive a pass;
5. legacy: advance the range's high-water mark and progress (committed).

A kill at any point loses nothing: the checkpoint trails the data, and a batch re-done after a
restart is a no-op (``ON CONFLICT`` with the version rule). Lock timeouts, deadlocks and
serialization failures retry the batch with jittered backoff; the batch size adapts toward the
target duration; the worker sleeps to honour the rows/s cap and pauses on health signals.

Failure states say what happened (``backfill_ranges.status = 'failed'`` and ``error``, plus a
``backfill_range_failed`` ledger entry): a dropped connection (either side: a restarted Postgres,
``pg_terminate_backend``) is recorded on a *fresh* legacy connection when the worker's own one is
the one that died, naming the side and the checkpoint a retry resumes from; a batch that violates a
constraint of the new table (or holds a value its column type rejects) is bisected, all rolled
back, to the first offending row, and :class:`BadRowError` names the entity, the legacy key, the
column and the constraint. After the fix, re-running the range resumes from its checkpoint.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import Any

import psycopg2

from migration_engine import control, keys, sqlfiles, telemetry
from migration_engine.backfill import store, throttle
from migration_engine.backfill.controller import Baseline, Decision, RateController, Sample
from migration_engine.backfill.probe import Probe
from migration_engine.backfill.settings import BackfillError
from migration_engine.backfill.sqlgen import EntitySql
from migration_engine.config import Backfill, MigrationConfig
from migration_engine.gates.window import fmt_duration

log = logging.getLogger(__name__)

RETRYABLE = {"55P03": "lock timeout", "40P01": "deadlock", "40001": "serialization failure",
             "57014": "statement timeout"}


class RangeBusyError(BackfillError):
    """Another worker holds this range (its advisory lock is taken)."""


class BadRowError(BackfillError):
    """A legacy row cannot be written to the new table as mapped (constraint violation, bad value).

    Attributes name the row for the range's ``error`` and for tests: ``entity``, ``key`` (the legacy
    key), ``column`` (new-side column(s), or None when Postgres does not say), ``constraint``.
    """

    def __init__(self, message: str, *, entity: str, key: Any, column: str | None,
                 constraint: str | None, sqlstate: str | None) -> None:
        super().__init__(message)
        self.entity, self.key, self.column, self.constraint, self.sqlstate = entity, key, column, constraint, sqlstate


class ConnectionLostError(BackfillError):
    """A database connection of the worker dropped mid-range (server restart, terminated backend)."""


# SQLSTATE classes of a row the new table will not take: 22 data exception, 23 integrity violation
_BAD_ROW_CLASSES = ("22", "23")
_WHOLE_RANGE = 2_147_483_647  # a re-read of a batch's own key range: no page limit
MAP_REFRESH_SECONDS = 10.0  # after a lookup miss, the direct path's maps are read again at most this often
# the pass's controller (backfill_controller): a range counts as still copying while its heartbeat (every
# checkpoint) is this fresh; a baseline claim whose measurement has not finished this long after
# baseline_duration is taken over by another range (its worker died mid-measurement)
COPYING_STALE_SECONDS = 60.0
BASELINE_STALE_SECONDS = 30.0
BASELINE_POLL_SECONDS = 0.2
_KINDS = {"23502": "NOT NULL", "23503": "foreign key", "23505": "unique", "23514": "check", "23P01": "exclusion"}


@dataclass
class RangeResult:
    entity: str
    run_id: int
    range_no: int
    status: str
    rows_read: int = 0
    rows_written: int = 0
    rows_deleted: int = 0
    batches: int = 0
    retries: int = 0
    seconds: float = 0.0
    paused_seconds: float = 0.0
    rows_per_second: float = 0.0
    pauses: list[str] = field(default_factory=list)
    final_batch_size: int = 0
    # batches by the path that wrote them ("copy": COPY straight into the target; "insert" / "upsert":
    # through the stage; "resolved_upsert": a direct-layout batch into a range holding rows) and the
    # fallbacks taken ("lookup_miss", "filled_meanwhile", "direct_failed")
    write_paths: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _ms(td: timedelta) -> str:
    return f"{int(td.total_seconds() * 1000)}ms"


def configure_session(conn, s: Backfill, application_name: str) -> None:
    """Bound every statement of the worker's sessions; UTC so COPY text round-trips timestamps.

    Also the repair's sessions (``migration_engine.repair``): it moves rows the same way."""
    settings = {"lock_timeout": _ms(s.lock_timeout), "statement_timeout": _ms(s.statement_timeout),
                "TimeZone": "UTC", "application_name": application_name, "DateStyle": "ISO, YMD",
                "IntervalStyle": "postgres", "extra_float_digits": "3",
                "work_mem": "64MB"}  # the batch's sort and hash join stay in memory
    if conn.server_version >= 140000:
        # A killed worker's backend notices the closed socket within a second even mid-statement,
        # rolls back and frees the range lock for the retry.
        settings["client_connection_check_interval"] = "1000"
    with conn.cursor() as cur:
        for name, value in settings.items():
            sqlfiles.run(cur, "common/set_setting.sql", params={"name": name, "value": value, "is_local": False})
    conn.commit()


_session = configure_session


@dataclass
class _Batch:
    """One page read from the legacy side: its COPY text, row count, high-water key, the range count
    at read time (recheck), and whether it is in the direct layout (lookups resolved)."""

    data: bytes
    n: int
    last: Any
    count: int
    direct: bool


@dataclass
class _Direct:
    """The direct path of one range: its lookup maps as the read's bound values (``params``:
    ``EntitySql.lookup_map_params``, built when the maps are read, not per batch) and the resolved
    stage's statements (a direct-layout batch into a range that holds rows)."""

    params: dict[str, Any]
    copy_target: str
    copy_in: str
    upsert: Any
    loaded_at: float = 0.0
    stale: bool = False
    misses: int = 0


class RangeWorker:
    def __init__(
        self,
        cfg: MigrationConfig,
        entity_name: str,
        run_id: int,
        range_no: int,
        settings: Backfill,
        legacy_connect: Callable[[], Any],
        new_connect: Callable[[], Any],
        *,
        share: int | None = None,
        actor: str = "backfill",
        should_stop: Callable[[], bool] = lambda: False,
        sleep: Callable[[float], None] = time.sleep,
        lock_wait_seconds: float = 30.0,
    ) -> None:
        if entity_name not in cfg.entities:
            raise BackfillError(f"entity {entity_name!r} is not in the migration config")
        self.cfg = cfg
        self.schema = cfg.control_schema
        self.es = EntitySql(entity_name, cfg.entities[entity_name], cfg.control_schema)
        self.run_id, self.range_no = run_id, range_no
        self.s = settings
        self._legacy_connect, self._new_connect = legacy_connect, new_connect
        self.share = share
        self.actor = actor
        self.should_stop = should_stop
        self.sleep = sleep
        self.lock_wait_seconds = lock_wait_seconds
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.label = f"{entity_name} range {range_no} (pass {run_id})"
        self.lock_name = f"backfill:{run_id}:{range_no}"
        self._next_health = 0.0
        self._rng = random.Random()
        e = self.es.entity
        self._tables = {"legacy": (e.old_table.schema_name, e.old_table.table),
                        "new": (e.new_table.schema_name, e.new_table.table)}
        self._wal = throttle.WalRate()
        self._health: throttle.Health | None = None
        self.controller: RateController | None = None  # the pass's controller as last read from the control schema
        self.decisions: list[Decision] = []  # the pass's decisions this worker made (the bench reads them)
        self.decision_times: list[float] = []  # time.monotonic() of each
        self._direct: _Direct | None = None
        self.write_paths: dict[str, int] = {}  # see RangeResult.write_paths (the bench reads it)
        # every pacing read: (decisions of the pass so far, the pass's rate, ranges still copying)
        self.paced: list[tuple[int, float, int]] = []
        self.made: list[int] = []  # the numbers (1, 2, ...) of the pass's decisions this worker made
        self.decision_interval: float | None = None  # None: probe_interval (tests set it)
        self._seen_cuts = 0
        self._control_conn = None  # the worker's legacy connection while it runs
        self._baseline_dict: dict | None = None

    # -- entry point ---------------------------------------------------------------------------
    def run(self) -> RangeResult:
        legacy = self._legacy_connect()
        new = self._new_connect()
        try:
            _session(legacy, self.s, f"migration-backfill:{self.es.name}:{self.range_no}")
            _session(new, self.s, f"migration-backfill:{self.es.name}:{self.range_no}")
            self._lock(legacy)
            try:
                return self._run(legacy, new)
            except Exception as exc:
                lost = _lost_side(exc, legacy, new)
                if lost is not None:
                    described = self._connection_lost(lost, legacy, exc)
                    self._record_failure(legacy, described)
                    raise described from exc
                self._record_failure(legacy, exc)
                raise
        finally:
            for conn in (new, legacy):
                try:
                    conn.close()
                except Exception:  # noqa: BLE001
                    pass

    def _lock(self, legacy) -> None:
        """Take the range's advisory lock. A killed predecessor's backend may hold it for a moment
        (until it notices its client is gone), so wait up to ``lock_wait_seconds`` before giving up."""
        deadline = time.monotonic() + self.lock_wait_seconds
        while True:
            with legacy.cursor() as cur:
                sqlfiles.run(cur, "backfill/try_lock.sql", params={"lock_name": self.lock_name})
                locked = cur.fetchone()[0]
            legacy.commit()
            if locked:
                return
            if time.monotonic() >= deadline:
                raise RangeBusyError(f"{self.label} is being copied by another worker (advisory lock "
                                     f"{self.lock_name!r} held for over {self.lock_wait_seconds:g}s); "
                                     "not starting a second one")
            self.sleep(0.5)

    def _connection_lost(self, side: str, legacy, exc: Exception) -> ConnectionLostError:
        """Name the side whose connection dropped and where a retry resumes (read on a live connection)."""
        checkpoint = None
        try:
            conn = legacy if side != "legacy" else self._legacy_connect()
            try:
                if conn is legacy:
                    legacy.rollback()
                rng = store.get_range(conn, self.schema, self.run_id, self.range_no)
                conn.rollback()
                checkpoint = rng.last_key if rng else None
            finally:
                if conn is not legacy:
                    conn.close()
        except Exception as read_exc:  # noqa: BLE001 - the message is still useful without the checkpoint
            log.warning("%s: could not read the checkpoint after the connection dropped: %s", self.label, read_exc)
        where = f"key {checkpoint}" if checkpoint is not None else "its last checkpoint"
        return ConnectionLostError(
            f"{self.label}: the connection to the {side} database dropped mid-range (server restart, "
            f"terminated backend or network): {type(exc).__name__}: {str(exc).strip()}. Nothing committed is "
            f"lost; a retry resumes after {where}")

    def _record_failure(self, legacy, exc: Exception) -> None:
        """status failed + error + ledger entry; on a fresh connection if the worker's own one is dead."""
        error = f"{type(exc).__name__}: {exc}"
        for attempt in ("own", "fresh"):
            conn = legacy
            try:
                if attempt == "fresh":
                    conn = self._legacy_connect()
                elif legacy.closed:
                    continue
                conn.rollback()
                store.fail_range(conn, self.schema, self.run_id, self.range_no, error)
                control.append_audit(conn, self.schema, actor=self.actor, action="backfill_range_failed",
                                     target=f"{self.es.name}#{self.range_no}",
                                     details={"backfill_run": self.run_id, "error": error[:2000],
                                              **_row_details(exc)},
                                     reason="the worker stopped with an error; a retry resumes from the checkpoint")
                conn.commit()
                return
            except Exception as rec_exc:  # noqa: BLE001 - the original error is what matters
                log.warning("%s: could not record the failure on the %s connection: %s", self.label,
                            attempt, rec_exc)
            finally:
                if conn is not legacy:
                    try:
                        conn.close()
                    except Exception:  # noqa: BLE001
                        pass
        log.error("%s: the failure is NOT recorded in %s.backfill_ranges (legacy database unreachable): %s",
                  self.label, self.schema, error)

    # -- the loop ------------------------------------------------------------------------------
    def _run(self, legacy, new) -> RangeResult:
        rng = store.get_range(legacy, self.schema, self.run_id, self.range_no)
        legacy.commit()
        if rng is None:
            raise BackfillError(f"{self.label} does not exist in {self.schema}.backfill_ranges; plan first")
        result = RangeResult(self.es.name, self.run_id, self.range_no, rng.status)
        if rng.done:
            log.info("%s: already done (%s rows read earlier)", self.label, f"{rng.rows_read:,}")
            return result
        self._read_key(legacy)
        share = self.share or 1
        store.start_range(legacy, self.schema, self.run_id, self.range_no, self.worker)
        control.append_audit(legacy, self.schema, actor=self.actor, action="backfill_range_started",
                             target=f"{self.es.name}#{self.range_no}",
                             details={"backfill_run": self.run_id, "key_lo": rng.key_lo, "key_hi": rng.key_hi,
                                      "resume_from": rng.last_key, "rows_done": rng.rows_read,
                                      "rows_total": rng.rows_total, "worker": self.worker},
                             reason="resumed from checkpoint" if rng.last_key != rng.key_lo else "started")
        legacy.commit()
        self._create_stage(new, self.es.create_stage())
        self._direct = self._direct_setup(new)
        copy_in = self.es.copy_into_stage().as_string(new)
        write_sql = (self.es.write_batch(self.s.version_column), self.es.write_batch(None, empty_range=True))
        hi = rng.key_hi
        self._control_conn = legacy
        probe = self._start_controller(rng.key_lo, hi, share) if self.s.throttle.budget.enabled else None
        try:
            return self._copy(legacy, new, result, rng, share, copy_in, write_sql, probe)
        finally:
            if probe is not None:
                probe.stop()

    def _start_controller(self, key_lo: int, key_hi: int, share: int) -> Probe:
        """Baseline before the first batch (probe on both databases + the app's p95), then the probe thread."""
        b = self.s.throttle.budget
        probe = Probe(self.es, b, {"legacy": self._legacy_connect, "new": self._new_connect}, key_lo, key_hi,
                      label=self.label).open()
        try:
            baseline = self._pass_baseline(probe)
            pc = self._read_controller()
            self._sync(pc, None, baseline)
            self._seen_cuts = self.controller.cuts if self.controller is not None else 0
        except Exception:
            probe.stop()
            raise
        assert self.controller is not None
        latency = baseline.latency_ms
        app = baseline.app_p95_ms
        limits = {k: None if v is None else round(v, 3) for k, v in self.controller.limits().items()}
        allowance = self.controller.allowance_ms
        log.info("%s: latency budget +%g%% over baseline %s (limits %s; %s), replication lag <= %gs; "
                 "the pass at %s rows/s (this range: %s; one controller for the pass's ranges)", self.label,
                 b.max_latency_increase_pct,
                 {k: None if v is None else round(v, 3) for k, v in latency.items()}
                 | {f"{k} commit": None if v is None else round(v, 3) for k, v in baseline.commit_ms.items()}
                 | {"app p95": app}, limits,
                 f"each probe may rise {allowance:.2f} ms = {b.max_latency_increase_pct:g} % of the app's p95 "
                 f"({'stated: app_p95_ms' if b.app_p95_ms is not None else 'stats contract'})"
                 if allowance is not None else "each probe relative to its own baseline",
                 b.max_replication_lag.total_seconds(), f"{self.controller.rate:,.0f}",
                 f"{self.controller.worker_rate(max(1, pc.copying)):,.0f}")
        return probe.start()

    # -- the pass's controller (one per pass, in the control schema) ----------------------------------
    def _control(self, fn, *args, **kw):
        """One call on the worker's legacy connection (where the control schema lives), committed."""
        conn = self._control_conn
        assert conn is not None, "the worker's legacy connection is opened in run()"
        try:
            out = fn(conn, self.schema, self.run_id, *args, **kw)
            conn.commit()
            return out
        except Exception:
            conn.rollback()
            raise

    def _read_controller(self) -> store.PassController:
        pc = self._control(store.get_controller, interval_seconds=self._decision_interval(),
                           ledger_seconds=self.s.ledger_progress_interval.total_seconds(),
                           stale_seconds=COPYING_STALE_SECONDS)
        if pc is None or pc.baseline is None:
            raise BackfillError(f"{self.label}: the pass's controller row in {self.schema}.backfill_controller "
                                "is missing or has no baseline (deleted while the pass runs?)")
        return pc

    def _decision_interval(self) -> float:
        if self.decision_interval is not None:
            return self.decision_interval
        return self.s.throttle.budget.probe_interval.total_seconds()

    def _pass_baseline(self, probe: Probe) -> Baseline:
        """One baseline per pass, in the control schema: the first range to start measures it before it
        copies; the others (other threads or processes) wait for it, bounded, and reuse it, as does a
        retried or resumed range later (instead of measuring a database the copy already loads). A
        claim whose measurement does not finish in time (its worker died) is taken over."""
        b = self.s.throttle.budget
        stale = b.baseline_duration.total_seconds() + BASELINE_STALE_SECONDS
        deadline = time.monotonic() + 2 * stale + BASELINE_STALE_SECONDS
        waiting_for = None
        while True:
            if self._control(store.claim_baseline, self.range_no, stale):
                latency = probe.baseline(self.sleep)
                legacy = self._legacy_connect()
                try:
                    app = throttle.app_p95(legacy, self.schema, self.es.name, self.s.app_latency_window)
                finally:
                    legacy.close()
                baseline = Baseline(latency, app, commit_ms=probe.commit_baseline)
                fresh = RateController(b, baseline, max_rows_per_second=self.s.max_rows_per_second)
                if self._control(store.set_baseline, self.range_no, baseline.as_dict(), fresh.to_dict(), fresh.rate):
                    log.info("%s: measured the pass's latency baseline before the copy", self.label)
                    self._baseline_dict = baseline.as_dict()
                    return baseline
                log.warning("%s: another range took over the pass's baseline measurement (this one took over "
                            "%gs); using that one's", self.label, stale)
            pc = self._control(store.get_controller, interval_seconds=0.0, ledger_seconds=0.0,
                               stale_seconds=COPYING_STALE_SECONDS)
            if pc is not None and pc.baseline is not None:
                log.info("%s: using the pass's baseline measured before the copy started (by range %s)",
                         self.label, pc.baseline_by)
                self._baseline_dict = pc.baseline
                return Baseline.from_dict(pc.baseline)
            by = pc.baseline_by if pc is not None else None
            if time.monotonic() >= deadline:
                raise BackfillError(
                    f"{self.label}: the pass's latency baseline is still not measured after "
                    f"{2 * stale + BASELINE_STALE_SECONDS:g}s (range {by} claimed it in "
                    f"{self.schema}.backfill_controller); not copying without a baseline - retry the range")
            if by != waiting_for:
                log.info("%s: waiting for range %s to measure the pass's latency baseline", self.label, by)
                waiting_for = by
            self.sleep(BASELINE_POLL_SECONDS)

    def _sync(self, pc: store.PassController, probe: Probe | None, baseline: Baseline | None = None) -> None:
        """The pass's controller as stored; a cut another range made resets this range's probe window too."""
        b = self.s.throttle.budget
        if baseline is None:
            if self.controller is not None and pc.baseline == self._baseline_dict:
                baseline = self.controller.baseline
            else:
                baseline = Baseline.from_dict(pc.baseline or {})
                self._baseline_dict = pc.baseline
        self.controller = RateController.from_dict(b, baseline, pc.state,
                                                   max_rows_per_second=self.s.max_rows_per_second)
        if probe is not None and self.controller.cuts > self._seen_cuts and b.reset_after_cut:
            probe.reset_window()
        self._seen_cuts = max(self._seen_cuts, self.controller.cuts)

    def _pace(self, legacy, probe: Probe, log_state: dict) -> float:
        """This range's rate: the pass's decided rate x its share of the ranges still copying. If the pass's
        decision is due, this range makes it (on its latest sample), compare-and-set on the decision count:
        at most one decision per decision interval per pass, whichever range gets there first."""
        pc = self._read_controller()
        self._sync(pc, probe)
        assert self.controller is not None
        if pc.due:
            d = self._decide(probe, pc.achieved if pc.achieved > 0 else None)
            counts = dict(pc.counts)
            counts[d.action] = counts.get(d.action, 0) + 1
            won = store.record_decision(legacy, self.schema, self.run_id, self.range_no, seen=pc.decisions,
                                        rate=self.controller.rate, state=self.controller.to_dict(),
                                        decision=d.as_dict(), counts={} if pc.ledger_due else counts,
                                        ledgered=pc.ledger_due)
            if won:
                self._seen_cuts = self.controller.cuts
                if pc.ledger_due:
                    self._ledger_decision(legacy, d, counts)  # same transaction as the decision
                else:
                    legacy.commit()
                now = time.monotonic()
                if d.action == "decrease" or now - log_state["at"] >= self.s.progress_interval.total_seconds():
                    log.info("%s: throttle: %s (the pass's decision %d; %d range(s) copying)", self.label,
                             d.text(), pc.decisions + 1, max(1, pc.copying))
                    log_state["at"] = now
                pc = dataclasses.replace(pc, decisions=pc.decisions + 1)
                self.made.append(pc.decisions)
            else:
                legacy.rollback()  # another range decided first: pace at its rate
                self.decisions.pop()
                self.decision_times.pop()
                pc = self._read_controller()
                self._sync(pc, probe)
        copying = max(1, pc.copying)
        self.paced.append((pc.decisions, self.controller.rate, copying))
        return self.controller.worker_rate(copying)

    def _paced_sleep(self, legacy, probe: Probe, log_state: dict, t0: float, n: int, pause: float,
                     cap_pause: float, last: tuple[float, float]) -> tuple[float, float]:
        """Sleep out a batch's pause under the controller, reading the pass's rate every half decision
        interval: a rate raised meanwhile (fast recovery when a peak is over) ends the pause at the new
        rate instead of the old one - at the minimum rate one batch of min_batch_size rows is a pause of
        seconds, during which the pass made no decision. The fixed cap's share still holds. ``last``: the
        worker's rate and when it was read; returns them, updated if read meanwhile."""
        step = self._decision_interval() / 2
        now = time.monotonic()
        end, cap_end = now + pause, now + cap_pause
        rate, read_at = last
        while (left := end - time.monotonic()) > 0:
            self.sleep(min(left, step))
            if time.monotonic() >= end:
                break
            rate, read_at = self._pace(legacy, probe, log_state), time.monotonic()
            end = max(cap_end, t0 + n / rate)  # this batch's rows at the rate now
        return rate, read_at

    def _decide(self, probe: Probe, achieved: float | None) -> Decision:
        assert self.controller is not None
        h = self._health
        sample = Sample(latency_ms=probe.latest(), app_p95_ms=h.app_p95_latency_ms if h else None,
                        lag_seconds={"legacy": h.replication_lag_seconds if h else None,
                                     "new": h.new_replication_lag_seconds if h else None},
                        commit_ms=probe.latest_commit())
        d = self.controller.decide(sample, achieved)
        if d.action == "decrease" and self.s.throttle.budget.reset_after_cut:
            probe.reset_window()  # the next signal is measured at the new rate only
        self.decisions.append(d)
        self.decision_times.append(time.monotonic())
        return d

    def _copy(self, legacy, new, result: RangeResult, rng, share: int, copy_in: str, write_sql,
              probe: Probe | None) -> RangeResult:
        after, hi = rng.last_key, rng.key_hi
        done_before, total = rng.rows_read, rng.rows_total
        per_worker_cap = throttle.worker_cap(self.s, share)
        size = throttle.paced_batch_size(self.s.initial_batch_size(), per_worker_cap, self.s)
        started = time.monotonic()
        # last_ledger is the progress entries' clock only: the throttle's entries are due by the pass's
        # controller row (store.get_controller's ledger_due), once per pass, not per range
        last_log = last_ledger = last_decision = started
        rate = 0.0
        worker_rate: float | None = None  # under the controller: this range's share of the pass's rate
        decision_log = {"at": started}
        log.info("%s: keys (%s, %s], %s; %s/%s rows done; batch %s, cap %s rows/s",
                 self.label, rng.key_lo, hi,
                 f"resuming after key {after}" if after != rng.key_lo else "starting", f"{done_before:,}",
                 f"{total:,}", size,
                 f"{self.s.max_rows_per_second / share:,.0f}" if self.s.max_rows_per_second else "none")
        done = False
        while not done:
            if self.should_stop():
                log.warning("%s: stop requested; checkpoint at key %s", self.label, after)
                result.status = "stopped"
                break
            self._pause_while_unhealthy(legacy, new, result)
            t0 = time.monotonic()
            batch = self._read(legacy, after, hi, size)
            done = batch.n < size  # a short page reached the end of the range (last is key_hi)
            written, retries, occupied = self._write(legacy, new, copy_in, write_sql, batch, after)
            data, n, last, count_at_read = batch.data, batch.n, batch.last, batch.count  # (a redo may re-read)
            deleted = (self._recheck(legacy, new, data, after, last, count_at_read)
                       if written and self.s.recheck_deleted else 0)
            if self.s.recheck_deleted and occupied:
                # a ghost is a new row that was in the range before this batch: none there, none to sweep
                deleted += self._sweep(legacy, new, data, after, last)
            elapsed = time.monotonic() - t0
            pause = cap_pause = throttle.rate_sleep(n, elapsed, self.s, share)
            if probe is not None:
                now = time.monotonic()
                # read the pass's controller twice per decision interval: the decision is due by the
                # database's clock, and reading it only once per interval let it slip to 1-2 intervals
                if worker_rate is None or now - last_decision >= self._decision_interval() / 2:
                    worker_rate = self._pace(legacy, probe, decision_log)
                    last_decision = now
                pause = max(pause, n / worker_rate - elapsed if n else 0.0)
            batch_rate = n / (elapsed + pause) if n else 0.0
            rate = batch_rate if rate == 0 else 0.7 * rate + 0.3 * batch_rate
            result.rows_read += n
            result.rows_written += written
            result.rows_deleted += deleted
            result.batches += 1
            result.retries += retries
            remaining = max(0, total - done_before - result.rows_read)
            eta = remaining / rate if rate > 0 else None
            status = store.checkpoint(
                legacy, self.schema, self.run_id, self.range_no, prev_key=after, last_key=last, done=done,
                rows_read=n, rows_written=written, rows_deleted=deleted, retries=retries, batch_size=size,
                rows_per_second=round(rate, 1), eta_seconds=None if done else eta)
            legacy.commit()
            if status is None:
                raise BackfillError(f"{self.label}: checkpoint refused (the range's high-water mark is no longer "
                                    f"at key {after}, where this batch started: another worker?)")
            after = last
            now = time.monotonic()
            if now - last_log >= self.s.progress_interval.total_seconds() or done:
                self._log_progress(done_before + result.rows_read, total, rate, eta, size, after, hi, done)
                self._emit_progress(legacy)  # same cadence: at most once per progress_interval, and at the end
                last_log = now
            if now - last_ledger >= self.s.ledger_progress_interval.total_seconds() and not done:
                self._ledger_progress(legacy, done_before + result.rows_read, total, rate, eta, after, hi, done)
                last_ledger = now
            # under a rate (the controller's or the fixed cap), small batches at an even pace
            size = throttle.paced_batch_size(throttle.next_batch_size(size, elapsed, self.s),
                                             worker_rate if worker_rate is not None else per_worker_cap, self.s)
            if pause > 0 and probe is not None:
                worker_rate, last_decision = self._paced_sleep(legacy, probe, decision_log, t0, n, pause, cap_pause,
                                                               (worker_rate, last_decision))
            elif pause > 0:
                self.sleep(pause)
        if probe is not None:
            # the pass's decisions since the last entry, however short the range was (as the pacer's close does)
            flushed = store.flush_decisions(legacy, self.schema, self.run_id)
            if flushed is not None:
                self._ledger_decision(legacy, Decision(**flushed[1]), flushed[0])
            else:
                legacy.commit()
        result.seconds = time.monotonic() - started
        result.final_batch_size = size
        result.write_paths = dict(self.write_paths)
        result.rows_per_second = result.rows_read / result.seconds if result.seconds > 0 else 0.0
        if done:
            result.status = "done"
            control.append_audit(legacy, self.schema, actor=self.actor, action="backfill_range_done",
                                 target=f"{self.es.name}#{self.range_no}",
                                 details={"backfill_run": self.run_id, **result.as_dict()},
                                 reason=f"copied keys up to {hi}")
            legacy.commit()
            log.info("%s: done - %s rows read, %s written, %s re-deleted in %s (%s rows/s, %s batches, "
                     "%s retries, paused %s; write paths %s)", self.label, f"{result.rows_read:,}",
                     f"{result.rows_written:,}", result.rows_deleted, fmt_duration_s(result.seconds),
                     f"{result.rows_per_second:,.0f}", result.batches, result.retries,
                     fmt_duration_s(result.paused_seconds), result.write_paths)
        return result

    def _read_key(self, legacy) -> None:
        """The key's type from the catalog (bounds are cast to it); refused if it changed since the plan."""
        run = store.get_run(legacy, self.schema, self.run_id)
        legacy.commit()
        e = self.es.entity
        try:
            key = keys.read_key(legacy, schema=e.old_table.schema_name, table=e.old_table.table, column=e.key,
                                what=f"entity {self.es.name}")
        except keys.UnsupportedKey as exc:
            legacy.rollback()
            raise BackfillError(f"{self.label}: {exc}") from exc
        legacy.commit()
        if run is not None and (run.key_column != key.column or keys.kind_of(run.key_type) != key.kind):
            raise BackfillError(f"{self.label}: the pass was planned on key {run.key_column} ({run.key_type}), "
                                f"but the key is now {key.column} ({key.type_name}); re-plan the backfill with "
                                "restart (restart_backfill Param, or zdm-backfill --restart)")
        self.es = dataclasses.replace(self.es, key=key)

    def _create_stage(self, new, statement) -> None:
        """A session stage table: ``CREATE TEMP TABLE ... AS SELECT ... WITH NO DATA`` takes ACCESS
        SHARE on the new-side tables it reads its types from, so a long ALTER there meets the session's
        lock_timeout - retried with jittered backoff like a batch, never a failed range at once."""
        retries = 0
        while True:
            try:
                with new.cursor() as cur:
                    cur.execute(statement)
                new.commit()
                return
            except psycopg2.Error as exc:
                if new.closed:
                    raise
                new.rollback()
                why = RETRYABLE.get(getattr(exc, "pgcode", None) or "")
                if why is None or retries >= self.s.max_batch_retries:
                    raise
                retries += 1
                delay = min(10.0, 0.2 * 2 ** (retries - 1)) * (1 + self._rng.random() / 2)
                log.warning("%s: %s creating the stage table (try %d of %d); retrying in %.1fs", self.label, why,
                            retries, self.s.max_batch_retries, delay)
                self.sleep(delay)

    # -- the direct path -----------------------------------------------------------------------
    def _direct_setup(self, new) -> _Direct | None:
        """The range's direct path (maps read, resolved stage created), or None (logged why not)."""
        if not self.s.direct_copy:
            log.info("%s: direct COPY off (backfill.direct_copy is false): every batch goes through the stage",
                     self.label)
            return None
        maps = self._lookup_maps(new)
        if maps is None:
            return None
        self._create_stage(new, self.es.create_stage(resolved=True))
        direct = _Direct(params=self.es.lookup_map_params(maps), copy_target=self.es.copy_into_target().as_string(new),
                         copy_in=self.es.copy_into_stage(resolved=True).as_string(new),
                         upsert=self.es.write_batch(self.s.version_column, resolved=True),
                         loaded_at=time.monotonic())
        sizes = {c.new: len(maps[i]) for i, c in self.es.lookup_columns()}
        log.info("%s: direct COPY on for batches into an empty key range%s", self.label,
                 f" (lookup maps read from the new database: {sizes} entries)" if sizes else "")
        return direct

    def _lookup_maps(self, new) -> dict[int, dict[str, str]] | None:
        """Each looked-up column's lookup table as {match text: value text}; None (logged) when one
        is too big for the direct path or its match column repeats a value."""
        limit = self.s.direct_copy_max_lookup_entries
        maps: dict[int, dict[str, str]] = {}
        for i, c in self.es.lookup_columns():
            lk = c.lookup
            with new.cursor() as cur:
                sqlfiles.run(cur, "backfill/lookup_map.sql", self.es.lookup_map_ids(c), {"max_entries": limit + 1})
                rows = cur.fetchall()
            new.commit()
            if len(rows) > limit:
                log.info("%s: direct COPY off: lookup table %s of column %s has more than %s rows "
                         "(backfill.direct_copy_max_lookup_entries); every batch goes through the stage",
                         self.label, lk.table, c.new, f"{limit:,}")
                return None
            m = dict(rows)
            if len(m) < len(rows):
                log.warning("%s: direct COPY off: %s.%s (lookup of column %s) repeats a value; every batch goes "
                            "through the stage", self.label, lk.table, lk.match, c.new)
                return None
            maps[i] = m
        return maps

    def _count(self, what: str) -> None:
        self.write_paths[what] = self.write_paths.get(what, 0) + 1

    def _refresh_maps(self, new) -> None:
        """After a lookup miss: read the maps again (at most every MAP_REFRESH_SECONDS), so a lookup
        row added since the range started is found; too big now -> direct path off for the range."""
        d = self._direct
        if d is None or not d.stale or time.monotonic() - d.loaded_at < MAP_REFRESH_SECONDS:
            return
        maps = self._lookup_maps(new)
        if maps is None:
            self._direct = None
            return
        d.params, d.stale, d.loaded_at = self.es.lookup_map_params(maps), False, time.monotonic()

    # -- one batch -----------------------------------------------------------------------------
    def _read(self, legacy, after: Any, hi: Any, size: int, *, staged: bool = False) -> _Batch:
        """One page as COPY text, in the direct layout while the range has a direct path (else, or
        ``staged``, the stage's). A lookup value the direct path's map lacks stops that read (the
        SELECT raises): the page is read again the staged way, which the new table resolves."""
        d = None if staged else self._direct
        if d is not None:
            try:
                return self._read_page(legacy, after, hi, size, d.params)
            except psycopg2.DataError as exc:
                if legacy.closed:
                    raise
                legacy.rollback()
                self._count("lookup_miss")
                d.stale = True
                d.misses += 1
                if d.misses == 1:  # the first of the range in full; the done line counts them all
                    log.info("%s: a batch after key %s holds a value the direct path cannot resolve (%s); "
                             "reading it the staged way (resolved in the new table, as without the direct path)",
                             self.label, after, (exc.diag.message_primary or str(exc)).strip())
        return self._read_page(legacy, after, hi, size, None)

    def _read_page(self, legacy, after: Any, hi: Any, size: int, lookup_params: dict | None) -> _Batch:
        """(data, rows, high-water key it reaches, all rows in that key range, direct layout).

        Read and count share one REPEATABLE READ snapshot, so the count is what the page came from.
        """
        buf = io.BytesIO()
        with legacy.cursor() as cur:
            sqlfiles.run(cur, "backfill/read_snapshot.sql")
            cur.copy_expert(self.es.read_batch(cur, after_key=after, range_hi=hi, limit=size,
                                               lookup_params=lookup_params), buf)
            data = buf.getvalue()
            n = data.count(b"\n")
            # a short page reached the end of the range; a full one ends at its last key (parsed from
            # the COPY text, any key type)
            last = self.es.key.parse(keys.last_line_key(data)) if n >= size else hi
            count = 0
            if n and self.s.recheck_deleted:
                sqlfiles.run(cur, "backfill/count_range.sql", self.es.old_ids(), {"after_key": after, "last_key": last})
                count = cur.fetchone()[0]
        legacy.commit()  # end the read snapshot right away
        return _Batch(data, n, last, count, lookup_params is not None)

    def _write(self, legacy, new, copy_in: str, write_sql: tuple, batch: _Batch, after: Any
               ) -> tuple[int, int, bool]:
        """Write one batch, committed; returns (rows written, retries, whether the key range held new
        rows before the batch).

        One index probe first (``range_occupied.sql``, same transaction): a range with no new rows
        yet - every range of a first pass - takes the direct COPY into the target (a direct-layout
        batch) or the plain INSERT from the stage (no speculative insertion per row); a row a
        dual-write lands there meanwhile fails it on the unique legacy id, and the batch is redone
        at once with the upsert (the version rule decides, nothing was written). A range that holds
        rows takes the upsert. A direct-layout batch the new table rejects otherwise (a bad row, or
        a value the target's input function reads differently from the staged path's assignment
        cast) is read and written again the staged way, which decides and reports as always; the
        range's direct path is off from then on.
        """
        data, last, direct = batch.data, batch.last, batch.direct
        d = self._direct
        if direct and d is not None:
            copy_sql, upsert_sql, empty_sql = d.copy_in, d.upsert, None
        else:
            direct = False
            copy_sql, (upsert_sql, empty_sql) = copy_in, write_sql
        check = self.s.recheck_deleted or bool(data)
        retries = 0
        plain_allowed = True
        while True:
            plain = False
            try:
                with new.cursor() as cur:
                    occupied = False
                    if check:
                        sqlfiles.run(cur, "backfill/range_occupied.sql", self.es.new_ids(),
                                     {"after_key": after, "last_key": last})
                        occupied = bool(cur.fetchone()[0])
                    written = 0
                    if data:
                        plain = plain_allowed and not occupied
                        if plain and direct:
                            cur.copy_expert(d.copy_target, io.BytesIO(data))
                            path = "copy"
                        else:
                            cur.copy_expert(copy_sql, io.BytesIO(data))
                            cur.execute(empty_sql if plain else upsert_sql)
                            path = ("resolved_upsert" if direct else "upsert") if not plain else "insert"
                        written = cur.rowcount if cur.rowcount >= 0 else batch.n
                new.commit()
                if data:
                    self._count(path)
                if not direct:
                    self._refresh_maps(new)
                return written, retries, occupied or not plain_allowed
            except psycopg2.Error as exc:
                if new.closed:
                    raise
                new.rollback()
                code = getattr(exc, "pgcode", None) or ""
                if plain and code == "23505":
                    # a row arrived in the range between the probe and the insert (a dual-write), or a
                    # unique value of another column repeats: the upsert decides / names the bad row
                    log.info("%s: the key range of a batch filled meanwhile (%s); writing it with the upsert",
                             self.label, (getattr(exc.diag, "constraint_name", None) or "unique violation"))
                    self._count("filled_meanwhile")
                    plain_allowed = False
                    continue
                if code[:2] in _BAD_ROW_CLASSES and direct:
                    log.warning("%s: the new table rejects a batch in the direct layout after key %s (%s); "
                                "reading and writing it the staged way, direct COPY off for the rest of the "
                                "range", self.label, after, (exc.diag.message_primary or str(exc)).strip())
                    self._count("direct_failed")
                    self._direct = None
                    again = self._read(legacy, after, last, _WHOLE_RANGE, staged=True)
                    batch.data, batch.n, batch.count, batch.direct = again.data, again.n, again.count, False
                    written, more, occupied = self._write(legacy, new, copy_in, write_sql, batch, after)
                    return written, retries + more, occupied
                if code[:2] in _BAD_ROW_CLASSES:
                    raise self._bad_row(new, copy_sql, upsert_sql, data, exc) from exc
                why = RETRYABLE.get(code)
                if why is None or retries >= self.s.max_batch_retries:
                    raise
                retries += 1
                delay = min(10.0, 0.2 * 2 ** (retries - 1)) * (1 + self._rng.random() / 2)
                log.warning("%s: %s writing a batch (try %d of %d); retrying in %.1fs", self.label, why,
                            retries, self.s.max_batch_retries, delay)
                self.sleep(delay)

    def _bad_row(self, new, copy_in: str, write_sql, data: bytes, exc: psycopg2.Error) -> BadRowError:
        """Bisect the batch (every try rolled back) to the first row that fails alone; name it."""
        lines = data.splitlines(keepends=True)

        def fails(chunk: list[bytes]) -> psycopg2.Error | None:
            try:
                with new.cursor() as cur:
                    cur.copy_expert(copy_in, io.BytesIO(b"".join(chunk)))
                    cur.execute(write_sql)
                return None
            except psycopg2.Error as err:
                return err
            finally:
                new.rollback()

        culprit, err = lines, exc
        while len(culprit) > 1:
            half = len(culprit) // 2
            first = fails(culprit[:half])
            if first is not None:
                culprit, err = culprit[:half], first
                continue
            second = fails(culprit[half:])
            if second is None:  # only the combination fails (e.g. two rows with one unique value)
                break
            culprit, err = culprit[half:], second
        key = self._line_key(culprit[0]) if len(culprit) == 1 else None
        diag = err.diag
        constraint = diag.constraint_name
        column = diag.column_name
        if column is None and constraint and diag.schema_name and diag.table_name:
            try:
                with new.cursor() as cur:
                    sqlfiles.run(cur, "backfill/constraint_columns.sql", params={
                        "schema_name": diag.schema_name, "table_name": diag.table_name,
                        "constraint_name": constraint})
                    column = ", ".join(r[0] for r in cur.fetchall()) or None
                new.rollback()
            except psycopg2.Error:
                new.rollback()
        code = err.pgcode or ""
        kind = _KINDS.get(code, "data" if code.startswith("22") else "integrity")
        e = self.es.entity
        table = f"{diag.schema_name or e.new_table.schema_name}.{diag.table_name or e.new_table.table}"
        mapped = {c.new: c.old for c in e.columns}
        source = ", ".join(f"{col} (from legacy column {mapped[col]})" if col in mapped else col
                           for col in (column.split(", ") if column else []))
        who = (f"legacy {e.key} {key}" if key is not None
               else f"rows with legacy {e.key} {self._line_key(culprit[0])}..{self._line_key(culprit[-1])} "
                    "together")
        what = f"violates {kind} constraint {constraint}" if constraint else f"is rejected ({kind} error)"
        detail = (diag.message_detail or "").strip()
        detail = f" ({detail})" if detail.startswith("Key (") else ""  # no row dumps in errors: keys only
        message = (f"{self.label}: bad row in entity {self.es.name}: {who}: column {source or 'unknown'} of "
                   f"{table} {what} [SQLSTATE {code}]: {(diag.message_primary or str(err)).strip()}{detail}. "
                   f"Fix the row in {e.old_table} (or the mapping / the constraint) and re-run the backfill: "
                   f"the range resumes from its checkpoint")
        log.error("%s", message)
        return BadRowError(message, entity=self.es.name, key=key, column=column, constraint=constraint,
                           sqlstate=code or None)

    def _line_key(self, line: bytes) -> Any:
        """The key (first field) of one line of COPY text, as a key value."""
        return self.es.key.parse(keys.first_field(line))

    def _recheck(self, legacy, new, data: bytes, after: Any, last: Any, count_at_read: int) -> int:
        """Re-delete copied rows whose old row vanished between our read and our commit.

        The application's dual-write delete ran before our INSERT committed, so it could not see
        the row. Cheap when nothing was deleted (one range count); precise when something was.
        """
        ids = self.es.old_ids()
        with legacy.cursor() as cur:
            sqlfiles.run(cur, "backfill/count_range.sql", ids, {"after_key": after, "last_key": last})
            if cur.fetchone()[0] >= count_at_read:
                legacy.commit()
                return 0
            key = self.es.key
            copied = [line.split(b"\t", 1)[0] for line in data.splitlines()]
            sqlfiles.run(cur, "backfill/existing_keys.sql", ids, {"keys": key.array_literal(copied)})
            still = {key.text(r[0]) for r in cur.fetchall()}
        legacy.commit()
        gone_text = [k for k in (keys.copy_field(f) for f in copied) if k not in still]
        if not gone_text:
            return 0
        gone = [key.value(k) for k in gone_text]
        with new.cursor() as cur:
            sqlfiles.run(cur, "backfill/delete_orphans.sql", self.es.new_ids(), {"keys": gone_text})
            deleted = len(cur.fetchall())
        new.commit()
        log.warning("%s: %d copied row(s) were deleted in the legacy table meanwhile; removed them from the "
                    "new table too (keys %s%s)", self.label, deleted, gone[:10], "..." if len(gone) > 10 else "")
        return deleted

    def _sweep(self, legacy, new, data: bytes, after: Any, last: Any) -> int:
        """Delete the ghosts in this batch's key range: new rows the batch did not copy whose old row
        is gone, or out of scope while the new row is in scope. Returns how many were deleted.

        The candidates are locked (FOR UPDATE) before the legacy side is asked, so a dual-write that
        brings such a row back (the application writes the old table first) either shows on the
        legacy side now, or waits for our commit and writes the row again after it. Rows out of
        scope on both sides are left alone: they are the application's (a listing it sold).
        """
        copied = self.es.key.array_literal([line.split(b"\t", 1)[0] for line in data.splitlines()])
        new_ids = {**self.es.new_ids(), "scope_column": self.es.new_scope_params()["new_scope_column"]}
        scope = {k: v for k, v in self.es.new_scope_params().items() if k != "new_scope_column"}
        retries = 0
        while True:
            try:
                with new.cursor() as cur:
                    sqlfiles.run(cur, "backfill/sweep_candidates.sql", new_ids,
                                 {"after_key": after, "last_key": last, "copied": copied, **scope})
                    # keys in their text form on both sides (psycopg2 gives an int for an integer key,
                    # a str for uuid / text), so the two databases' answers compare exactly
                    candidates = {str(k): bool(in_scope) for k, in_scope in cur.fetchall()}
                    if not candidates:
                        new.commit()
                        return 0
                    cand = list(candidates)  # in key order (the query's ORDER BY)
                    sqlfiles.run(cur, "backfill/sweep_lock_rows.sql", self.es.new_ids(), {"keys": cand})
                    locked = {str(r[0]) for r in cur.fetchall()}
                    with legacy.cursor() as lcur:
                        sqlfiles.run(lcur, "backfill/sweep_old_state.sql", self.es.old_ids(),
                                     {"keys": cand, **self.es.scope_params})
                        old = {str(k): bool(in_scope) for k, in_scope in lcur.fetchall()}
                    legacy.commit()
                    ghosts = [k for k in cand if k in locked and (k not in old or (not old[k] and candidates[k]))]
                    deleted: list[str] = []
                    if ghosts:
                        sqlfiles.run(cur, "backfill/sweep_delete.sql", self.es.new_ids(), {"keys": ghosts})
                        got = {str(r[0]) for r in cur.fetchall()}
                        deleted = [k for k in ghosts if k in got]
                new.commit()
                break
            except psycopg2.Error as exc:
                new.rollback()
                legacy.rollback()
                why = RETRYABLE.get(getattr(exc, "pgcode", None) or "")
                if why is None or retries >= self.s.max_batch_retries:
                    raise
                retries += 1
                delay = min(10.0, 0.2 * 2 ** (retries - 1)) * (1 + self._rng.random() / 2)
                log.warning("%s: %s sweeping ghosts (try %d of %d); retrying in %.1fs", self.label, why,
                            retries, self.s.max_batch_retries, delay)
                self.sleep(delay)
        if deleted:
            value = self.es.key.value
            gone = [value(k) for k in deleted if k not in old]
            out_of_scope = [value(k) for k in deleted if k in old]
            control.append_audit(legacy, self.schema, actor=self.actor, action="backfill_ghosts_deleted",
                                 target=f"{self.es.name}#{self.range_no}",
                                 details={"backfill_run": self.run_id, "deleted_old_rows": gone,
                                          "out_of_scope_old_rows": out_of_scope},
                                 reason="new rows whose old row is gone or out of scope (ghost sweep)")
            legacy.commit()
            log.warning("%s: deleted %d ghost row(s) from the new table (old row gone: %s; old row out of "
                        "scope: %s)", self.label, len(deleted), gone[:10], out_of_scope[:10])
        return len(deleted)

    # -- throttling and reporting --------------------------------------------------------------
    def _health_reasons(self, legacy, new) -> list[str]:
        h = throttle.read_health(legacy, new, schema=self.schema, entity=self.es.name, s=self.s,
                                 tables=self._tables, wal=self._wal)
        self._health = h
        return throttle.pause_reasons(h, self.s)

    def _pause_while_unhealthy(self, legacy, new, result: RangeResult) -> None:
        if time.monotonic() < self._next_health:
            return
        self._next_health = time.monotonic() + self.s.pause_check_interval.total_seconds()
        reasons = self._health_reasons(legacy, new)
        if not reasons:
            return
        started = time.monotonic()
        text = "; ".join(reasons)
        log.warning("%s: pausing - %s", self.label, text)
        result.pauses.append(text)
        store.set_pause(legacy, self.schema, self.run_id, self.range_no, text)
        control.append_audit(legacy, self.schema, actor=self.actor, action="backfill_paused",
                             target=f"{self.es.name}#{self.range_no}",
                             details={"backfill_run": self.run_id, "reasons": reasons}, reason=text)
        legacy.commit()
        last_log = started
        while reasons and not self.should_stop():
            self.sleep(self.s.pause_check_interval.total_seconds())
            reasons = self._health_reasons(legacy, new)
            if reasons and time.monotonic() - last_log >= self.s.progress_interval.total_seconds():
                log.warning("%s: still paused after %s - %s", self.label,
                            fmt_duration_s(time.monotonic() - started), "; ".join(reasons))
                last_log = time.monotonic()
        paused = time.monotonic() - started
        result.paused_seconds += paused
        store.set_pause(legacy, self.schema, self.run_id, self.range_no, None, paused)
        control.append_audit(legacy, self.schema, actor=self.actor, action="backfill_resumed",
                             target=f"{self.es.name}#{self.range_no}",
                             details={"backfill_run": self.run_id, "paused_seconds": round(paused, 1)},
                             reason=f"health signals back under thresholds after {fmt_duration_s(paused)}")
        legacy.commit()
        log.info("%s: resuming after a pause of %s", self.label, fmt_duration_s(paused))
        self._next_health = time.monotonic() + self.s.pause_check_interval.total_seconds()

    def _progress(self, done: int, total: int, rate: float, eta: float | None, after: Any, hi: Any,
                  finished: bool) -> dict:
        pct = 100.0 if finished else (100.0 * done / total if total else 0.0)
        return {"backfill_run": self.run_id, "rows_done": done, "rows_total": total, "pct": round(min(pct, 100.0), 1),
                "rows_per_second": round(rate, 1), "eta_seconds": None if eta is None else round(eta, 1),
                "last_key": after, "key_hi": hi}

    def _log_progress(self, done: int, total: int, rate: float, eta: float | None, size: int, after: Any,
                      hi: Any, finished: bool) -> None:
        p = self._progress(done, total, rate, eta, after, hi, finished)
        log.info("%s: %s/%s rows (%.1f%%), %s rows/s, ETA %s, batch %s, last key %s", self.label,
                 f"{done:,}", f"{total:,}", p["pct"], f"{rate:,.0f}",
                 "-" if finished or eta is None else fmt_duration_s(eta), f"{size:,}", after)

    def _emit_progress(self, legacy) -> None:
        """The pass's progress % and rows/s (all its ranges, from this checkpoint) as metrics, when an
        emitter listens (the Airflow layer); the same names the sampler sends (docs/metrics.md). A read
        that fails is logged and skipped: metrics never stop the copy."""
        if not telemetry.active():
            return
        try:
            with legacy.cursor() as cur:
                sqlfiles.run(cur, "perf/metrics_backfill.sql", {"schema": self.schema})
                cols = [d[0] for d in cur.description]
                rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
            legacy.commit()
        except psycopg2.Error as exc:
            legacy.rollback()
            log.warning("%s: backfill metrics not emitted (%s)", self.label, exc)
            return
        telemetry.emit(telemetry.backfill_metrics([r for r in rows if r["entity"] == self.es.name
                                                   and r["run_id"] == self.run_id]))

    def _ledger_decision(self, legacy, d: Decision, counts: dict[str, int]) -> None:
        """The controller's latest decision and how many of each kind since the last entry (bounded rate)."""
        assert self.controller is not None
        b = self.s.throttle.budget
        control.append_audit(legacy, self.schema, actor=self.actor, action="backfill_throttle",
                             target=f"{self.es.name}#{self.range_no}",
                             details={"backfill_run": self.run_id, **d.as_dict(), "decisions": counts,
                                      "decided_by_range": self.range_no,
                                      "baseline": self.controller.baseline.as_dict(),
                                      "budget": {"max_latency_increase_pct": b.max_latency_increase_pct,
                                                 "max_replication_lag_seconds": b.max_replication_lag.total_seconds()}},
                             reason=d.text())
        legacy.commit()

    def _ledger_progress(self, legacy, done: int, total: int, rate: float, eta: float | None, after: Any,
                         hi: Any, finished: bool) -> None:
        control.append_audit(legacy, self.schema, actor=self.actor, action="backfill_progress",
                             target=f"{self.es.name}#{self.range_no}",
                             details=self._progress(done, total, rate, eta, after, hi, finished), reason="progress")
        legacy.commit()


def _lost_side(exc: Exception, legacy, new) -> str | None:
    """'legacy' / 'new' when ``exc`` is a dropped connection of that side, else None."""
    if not isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError):
        return None
    if legacy.closed:
        return "legacy"
    if new.closed:
        return "new"
    code = getattr(exc, "pgcode", None) or ""
    if code.startswith("57P") or code.startswith("08"):  # admin shutdown / terminate, connection exception
        return "new" if getattr(exc, "cursor", None) is not None and exc.cursor.connection is new else "legacy"
    return None


def _row_details(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, BadRowError):
        return {"bad_row": {"entity": exc.entity, "key": exc.key, "column": exc.column,
                            "constraint": exc.constraint, "sqlstate": exc.sqlstate}}
    return {}


def fmt_duration_s(seconds: float) -> str:
    if seconds < 60:
        return f"{max(0.0, seconds):.1f}s"
    return fmt_duration(timedelta(seconds=seconds))
