"""Pacing of batched work outside the backfill: phase 1's batched UPDATEs and the repair's batches.

The backfill has its own integration (``backfill/engine.py``); this is the same idea for any loop
of short batches, behind one call between batches::

    pacer = Pacer(...).start()        # baseline of the probe before the first batch
    for batch in batches:
        n = do(batch)
        pacer.pace(n, key=last_key)   # health pause, controller decision, sleep
    pacer.close()

What :meth:`Pacer.pace` does, in this order:

* **health pause** (``pacing.<work>.health_pause``): at most every ``backfill.pause_check_interval``
  it reads the backfill's health signals (``backfill/throttle.read_health``: active connections,
  lock waits, replication lag or the operator's lag function, vacuum on the tables touched, the
  application's p95) against ``backfill.pause_when`` and waits while any is crossed; the reasons
  are logged and the pause and resume go to the audit ledger (``<action>_paused`` / ``_resumed``);
* **latency budget** (``pacing.<work>.controller``, default: as ``backfill.throttle.budget.enabled``):
  a probe times an indexed lookup on each table touched every ``probe_interval`` on its own
  connections (:class:`LookupProbe`; tests inject a fake :class:`SignalSource`), and once per
  probe interval the backfill's :class:`~migration_engine.backfill.controller.RateController`
  decides the rate from the probe, the app p95 and the replica lag; decisions are logged (every cut,
  otherwise every ``backfill.progress_interval``) and ledgered (``<action>_throttle``, at most once
  per ``backfill.ledger_progress_interval``, with the counts of decisions since the last entry);
* **rate**: it sleeps so the batches run at the controller's rate, capped by
  ``pacing.<work>.max_rows_per_second`` (which also applies without the controller).

No Airflow, no step of its own: it changes nothing but time, and writes only ledger entries.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from migration_engine import control, sqlfiles
from migration_engine.backfill import throttle
from migration_engine.backfill.controller import Baseline, Decision, RateController, Sample, median
from migration_engine.backfill.probe import ProbeThread
from migration_engine.config import Backfill, LatencyBudget, MigrationConfig
from migration_engine.pacing_settings import PacedWork

log = logging.getLogger(__name__)

LOOKUPS = 3  # lookups per probe sample; the sample is their median
SEED_KEYS = 50  # keys read from the start of a table for the baseline
KEY_POOL = 200  # latest keys the batches reported, drawn from by the probe
APPLICATION_NAME = "zdm-pacing-probe"


class SignalSource(Protocol):
    """What the pacer reads the latency signal from (a :class:`LookupProbe`, or a test's fake)."""

    def open(self) -> SignalSource: ...
    def baseline(self, sleep: Callable[[float], None]) -> dict[str, float | None]: ...
    def start(self) -> SignalSource: ...
    def latest(self) -> dict[str, float | None]: ...
    def add_keys(self, side: str, keys: Sequence[Any]) -> None: ...
    def stop(self) -> None: ...


@dataclass(frozen=True)
class ProbeTarget:
    """One table the probe times a lookup on: ``connect`` opens the probe's own session."""

    connect: Callable[[], Any]
    schema: str
    table: str
    key: str

    def ids(self) -> dict[str, str]:
        return {"schema": self.schema, "table": self.table, "key": self.key}


class LookupProbe(ProbeThread):
    """Times ``LOOKUPS`` lookups by key on each target every ``probe_interval`` in a daemon thread.

    Keys: the table's first keys (for the baseline), then those the batches report
    (:meth:`add_keys`) - the rows the work touches. A probe whose query fails logs once and gives no
    reading for that side; the work goes on (the health pause still runs on the work's connection).
    """

    thread_prefix = "pacing-probe"

    def __init__(self, targets: dict[str, ProbeTarget], budget: LatencyBudget, *, label: str) -> None:
        self.targets, self.b, self.label = targets, budget, label
        self._samples = {side: deque(maxlen=max(budget.signal_samples, 1)) for side in targets}
        self._keys: dict[str, deque] = {side: deque(maxlen=KEY_POOL) for side in targets}
        self._conns: dict[str, Any] = {}
        self._failed: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rng = random.Random()

    def open(self) -> LookupProbe:
        try:
            for side, t in self.targets.items():
                conn = t.connect()
                conn.autocommit = True
                self._conns[side] = conn
                with conn.cursor() as cur:
                    sqlfiles.run(cur, "common/set_setting.sql", params={
                        "name": "application_name", "value": APPLICATION_NAME, "is_local": False})
                    sqlfiles.run(cur, "common/set_setting.sql", params={
                        "name": "statement_timeout", "value": "5000ms", "is_local": False})
                    if not self._keys[side]:
                        sqlfiles.run(cur, "pacing/probe_keys.sql", t.ids(), {"limit_rows": SEED_KEYS})
                        self._keys[side].extend(r[0] for r in cur.fetchall())
        except Exception:
            self.stop()
            raise
        return self

    def add_keys(self, side: str, keys: Sequence[Any]) -> None:
        if side in self._keys:
            with self._lock:
                self._keys[side].extend(k for k in keys if k is not None)

    def sample_once(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for side, t in self.targets.items():
            with self._lock:
                pool = list(self._keys[side])
            if not pool or side not in self._conns:
                out[side] = None
                continue
            try:
                timings = []
                for _ in range(LOOKUPS):
                    key = self._rng.choice(pool)
                    t0 = time.perf_counter()
                    with self._conns[side].cursor() as cur:
                        sqlfiles.run(cur, "pacing/probe_lookup.sql", t.ids(), {"probe_key": key})
                        cur.fetchone()
                    timings.append((time.perf_counter() - t0) * 1000)
                ms = median(timings)
            except Exception as exc:  # noqa: BLE001 - a failing probe is reported, not fatal
                if side not in self._failed:
                    log.warning("%s: latency probe on %s.%s (%s database) failed (%s); no latency signal from it",
                                self.label, t.schema, t.table, side, exc)
                    self._failed.add(side)
                out[side] = None
                continue
            out[side] = ms
            with self._lock:
                self._samples[side].append(ms)
        return out

    def baseline(self, sleep: Callable[[float], None] = time.sleep) -> dict[str, float | None]:
        interval = self.b.probe_interval.total_seconds()
        n = max(5, round(self.b.baseline_duration.total_seconds() / interval))
        got: dict[str, list[float]] = {side: [] for side in self.targets}
        for i in range(n):
            for side, ms in self.sample_once().items():
                if ms is not None:
                    got[side].append(ms)
            if i < n - 1:
                sleep(interval)
        return {side: median(v) for side, v in got.items()}

    def _loop(self) -> None:
        while not self._stop.wait(self.b.probe_interval.total_seconds()):
            self.sample_once()

    def latest(self) -> dict[str, float | None]:
        with self._lock:
            return {side: median(list(v)) for side, v in self._samples.items()}


@dataclass
class PaceStats:
    """What the pacing did (for the step's notes and the tests)."""

    batches: int = 0
    rows: int = 0
    slept_seconds: float = 0.0
    paused_seconds: float = 0.0
    pauses: list[str] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"batches": self.batches, "rows": self.rows, "slept_seconds": round(self.slept_seconds, 2),
                "paused_seconds": round(self.paused_seconds, 2), "pauses": self.pauses,
                "decisions": len(self.decisions),
                "last_rate": round(self.decisions[-1].rows_per_second, 1) if self.decisions else None}


def controller_on(work: PacedWork, s: Backfill) -> bool:
    return s.throttle.budget.enabled if work.controller is None else work.controller


def app_entity(cfg: MigrationConfig, schema: str, table: str) -> str | None:
    """The entity whose old table this is (its stats rows carry the application's p95 for it)."""
    for name, e in cfg.entities.items():
        if (e.old_table.schema_name, e.old_table.table) == (schema, table):
            return name
    return None


class Pacer:
    """Between batches of one loop: health pause, latency-budget decision, sleep (see the module doc).

    ``legacy`` / ``new``: connections of the work (autocommit or between transactions) on which the
    health is read and the ledger written (legacy: the control schema's database); ``new`` is None
    when the work touches the legacy database only (phase 1). ``tables``: {"legacy"/"new": (schema,
    table)} touched, for the vacuum signal. ``probe``: the latency source (None: the controller runs
    on the app p95 and the replica lag alone). ``entity``: whose stats rows give the app p95 (None:
    the worst of every entity's).
    """

    def __init__(self, cfg: MigrationConfig, work: PacedWork, *, action: str, target: str, legacy, new=None,
                 tables: dict[str, tuple[str, str]], probe: SignalSource | None = None, entity: str | None = None,
                 actor: str = "migration", context: dict | None = None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg, self.work, self.s = cfg, work, cfg.backfill
        self.action, self.target = action, target
        self.legacy, self.new, self.tables = legacy, new, tables
        self.probe = probe
        self.entity = entity
        self.actor, self.context = actor, dict(context or {})
        self.sleep, self.clock = sleep, clock
        self.schema = cfg.control_schema
        self.controller: RateController | None = None
        self.stats = PaceStats()
        self._wal = throttle.WalRate() if new is not None else None
        self._next_health = 0.0
        self._health: throttle.Health | None = None
        self._last = clock()
        self._last_decision = self._last_log = self._last_ledger = -1e18
        self._since_ledger: dict[str, int] = {}
        self._rate = 0.0  # achieved rows/s (smoothed)
        self._probe_running = False

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> Pacer:
        """Health first (no first batch into a lagging replica), the baseline (controller on), the probe thread."""
        if self.work.health_pause:
            self._pause_while_unhealthy()
        if controller_on(self.work, self.s):
            b = self.s.throttle.budget
            latency: dict[str, float | None] = {}
            app = None
            if self.probe is not None:
                self.probe.open()
            try:
                if self.probe is not None:
                    latency = self.probe.baseline(self.sleep)
                app = self._app_p95()
            except Exception:
                if self.probe is not None:  # no probe session left behind
                    self.probe.stop()
                raise
            self.controller = RateController(b, Baseline(latency, app),
                                             max_rows_per_second=self.work.max_rows_per_second)
            limits = {k: None if v is None else round(v, 3) for k, v in self.controller.limits().items()}
            log.info("%s: latency budget +%g%% over baseline %s (limits %s), replication lag <= %gs; starting at "
                     "%s rows/s", self.target, b.max_latency_increase_pct,
                     {k: None if v is None else round(v, 3) for k, v in latency.items()} | {"app p95": app},
                     limits, b.max_replication_lag.total_seconds(), f"{self.controller.rate:,.0f}")
            if self.probe is not None:
                self.probe.start()
                self._probe_running = True
        elif self.work.max_rows_per_second:
            log.info("%s: capped at %s rows/s (no latency-budget controller)", self.target,
                     f"{self.work.max_rows_per_second:,}")
        self._last = self.clock()
        return self

    def close(self) -> None:
        """Stop the probe; the last decision goes to the ledger if some were not ledgered yet."""
        if self.probe is not None and (self._probe_running or self.controller is not None):
            self.probe.stop()
        if self.controller is not None and self._since_ledger and self.stats.decisions:
            self._ledger_decision(self.stats.decisions[-1])
        if self.stats.batches:
            log.info("%s: paced %d batches, %s rows, slept %.1fs, paused %.1fs%s", self.target, self.stats.batches,
                     f"{self.stats.rows:,}", self.stats.slept_seconds, self.stats.paused_seconds,
                     f", last rate {self.stats.decisions[-1].rows_per_second:,.0f} rows/s"
                     if self.stats.decisions else "")

    def __enter__(self) -> Pacer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- between batches -------------------------------------------------------------------------
    def pace(self, rows: int, *, keys: dict[str, Sequence[Any]] | None = None) -> None:
        """Call after each batch of ``rows`` rows (``keys``: per side, keys the batch touched, for the probe)."""
        elapsed = max(0.0, self.clock() - self._last)
        self.stats.batches += 1
        self.stats.rows += max(0, rows)
        if keys and self.probe is not None:
            for side, ks in keys.items():
                self.probe.add_keys(side, ks)
        if self.work.health_pause:
            self._pause_while_unhealthy()
        pause = 0.0
        if self.work.max_rows_per_second and rows > 0:
            pause = rows / self.work.max_rows_per_second - elapsed
        if self.controller is not None:
            now = self.clock()
            if now - self._last_decision >= self.s.throttle.budget.probe_interval.total_seconds():
                self._decide(now)
                self._last_decision = now
            if rows > 0:
                pause = max(pause, rows / self.controller.rate - elapsed)
        pause = max(0.0, pause)
        if rows > 0:
            batch_rate = rows / max(elapsed + pause, 1e-6)
            self._rate = batch_rate if self._rate == 0 else 0.7 * self._rate + 0.3 * batch_rate
        if pause > 0:
            self.stats.slept_seconds += pause
            self.sleep(pause)
        self._last = self.clock()

    def _decide(self, now: float) -> None:
        assert self.controller is not None
        h = self._health
        if not self.work.health_pause and now >= self._next_health:  # the lag and p95 signals still count
            h = self._read_health()
            self._next_health = now + self.s.pause_check_interval.total_seconds()
        latency = self.probe.latest() if self.probe is not None else {}
        lags = {"legacy": h.replication_lag_seconds if h else None}
        if self.new is not None:
            lags["new"] = h.new_replication_lag_seconds if h else None
        d = self.controller.decide(Sample(latency_ms=latency, app_p95_ms=h.app_p95_latency_ms if h else None,
                                          lag_seconds=lags), self._rate or None)
        self.stats.decisions.append(d)
        self._since_ledger[d.action] = self._since_ledger.get(d.action, 0) + 1
        if d.action == "decrease" or now - self._last_log >= self.s.progress_interval.total_seconds():
            log.info("%s: throttle: %s", self.target, d.text())
            self._last_log = now
        if now - self._last_ledger >= self.s.ledger_progress_interval.total_seconds():
            self._ledger_decision(d)
            self._last_ledger = now

    # -- health ------------------------------------------------------------------------------------
    def _app_p95(self) -> float | None:
        names = [self.entity] if self.entity else list(self.cfg.entities)
        values = [throttle.app_p95(self.legacy, self.schema, n, self.s.app_latency_window) for n in names]
        values = [v for v in values if v is not None]
        return max(values) if values else None

    def _read_health(self) -> throttle.Health:
        single = self.new is None
        new = self.legacy if single else self.new
        tables = {"legacy": self.tables["legacy"], "new": self.tables.get("new", self.tables["legacy"])}
        h = throttle.read_health(self.legacy, new, schema=self.schema,
                                 entity=self.entity or next(iter(self.cfg.entities)), s=self.s, tables=tables,
                                 wal=self._wal)
        if self.entity is None:
            h = replace(h, app_p95_latency_ms=self._app_p95())
        if single:  # one database: its signals once, not twice under two names
            h = replace(h, new_active_connections=0, new_lock_waits=0, new_replicas=0,
                        new_replication_lag_seconds=None, new_vacuums=0, new_wal_bytes_per_second=None)
        self._health = h
        return h

    def reasons(self) -> list[str]:
        return throttle.pause_reasons(self._read_health(), self.s)

    def _pause_while_unhealthy(self) -> None:
        if self.clock() < self._next_health:
            return
        interval = self.s.pause_check_interval.total_seconds()
        self._next_health = self.clock() + interval
        reasons = self.reasons()
        if not reasons:
            return
        started = last_log = self.clock()
        text = "; ".join(reasons)
        log.warning("%s: pausing - %s", self.target, text)
        self.stats.pauses.append(text)
        self._audit(f"{self.action}_paused", {"reasons": reasons}, text)
        while reasons:
            self.sleep(interval)
            reasons = self.reasons()
            if reasons and self.clock() - last_log >= self.s.progress_interval.total_seconds():
                log.warning("%s: still paused after %.0fs - %s", self.target, self.clock() - started,
                            "; ".join(reasons))
                last_log = self.clock()
        paused = self.clock() - started
        self.stats.paused_seconds += paused
        self._audit(f"{self.action}_resumed", {"paused_seconds": round(paused, 1)},
                    f"health signals back under thresholds after {paused:.1f}s")
        log.info("%s: resuming after a pause of %.1fs", self.target, paused)
        self._next_health = self.clock() + interval

    # -- ledger ------------------------------------------------------------------------------------
    def _audit(self, action: str, details: dict, reason: str) -> None:
        control.audit(self.legacy, self.schema, actor=self.actor, action=action, target=self.target,
                      details={**self.context, **details}, reason=reason)

    def _ledger_decision(self, d: Decision) -> None:
        assert self.controller is not None
        b = self.s.throttle.budget
        self._audit(f"{self.action}_throttle",
                    {**d.as_dict(), "decisions": self._since_ledger, "rows_done": self.stats.rows,
                     "baseline": self.controller.baseline.as_dict(),
                     "budget": {"max_latency_increase_pct": b.max_latency_increase_pct,
                                "max_replication_lag_seconds": b.max_replication_lag.total_seconds()}},
                    d.text())
        self._since_ledger = {}
