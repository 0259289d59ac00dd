"""The latency probe: a timed primary-key lookup on the source and target tables, every second.

Runs in a daemon thread with its own connection to each database (``application_name``
``migration-backfill-probe``), so it measures what an application query waits for - CPU, I/O,
buffer and lock contention caused by the copy - and not the copy's own statements. Keys are drawn
at random from the range being copied (the rows the copy touches). Each sample is ``LOOKUPS``
lookups per database spread evenly over the ``probe_interval`` (a burst of the copy is seen whenever
it happens, not only at the second's start); the signal is the ``SIGNAL_PERCENTILE`` of every lookup
in the last ``signal_samples`` samples - a tail latency like the application's p95, over enough
lookups that its noise stays well below a +20 % budget. :meth:`Probe.baseline` measures the same
percentile over ``baseline_duration`` before the first batch; :meth:`Probe.latest` gives the
signal. A probe whose query fails logs once and reports no reading for that side (the copy does not
stop because its probe did; the pause_when checks still run on the copy's connections).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from migration_engine import sqlfiles
from migration_engine.backfill.controller import median, percentile
from migration_engine.backfill.sqlgen import EntitySql
from migration_engine.config import LatencyBudget

log = logging.getLogger(__name__)

SIDES = ("legacy", "new")
LOOKUPS = 10  # lookups per database per sample, spread over the probe interval
SIGNAL_PERCENTILE = 90  # of the lookups in the window: a tail latency, as the application's p95
COMMIT = "commit:new"  # the commit probe's series (new database only: the one the copy writes)
COMMIT_PREFIX = "migration-backfill-probe"  # the logical message's prefix (decoding consumers can skip it)


class ProbeThread:
    """The sampling thread and own connections every probe has (the backfill's and the pacer's):
    :meth:`start` runs ``_loop`` in a daemon thread, :meth:`stop` ends it and closes the connections
    (best effort: a probe must never fail the work it measures)."""

    thread_prefix = "probe"
    label: str
    _stop: threading.Event
    _thread: threading.Thread | None
    _conns: dict[str, Any]

    def _loop(self) -> None:
        raise NotImplementedError

    def start(self):
        self._thread = threading.Thread(target=self._loop, name=f"{self.thread_prefix}-{self.label}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for conn in self._conns.values():
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass
        self._conns = {}


class Probe(ProbeThread):
    def __init__(self, es: EntitySql, budget: LatencyBudget, connect: dict[str, Callable[[], Any]],
                 key_lo: int, key_hi: int, *, label: str) -> None:
        self.es, self.b, self._connect = es, budget, connect
        self.key_lo, self.key_hi = key_lo, max(key_lo + 1, key_hi)
        self.label = label
        # series: the lookups per database, and the commit probe on the new one ("commit:new")
        self.series = SIDES + ((COMMIT,) if budget.commit_probe else ())
        self._samples = {k: deque(maxlen=max(budget.signal_samples, 1) * LOOKUPS) for k in self.series}
        self._all: dict[str, list[float]] = {k: [] for k in self.series}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conns: dict[str, Any] = {}
        self._failed: set[str] = set()
        self._rng = random.Random()
        self.commit_baseline: dict[str, float | None] = {}

    def open(self) -> Probe:
        """Connect to both databases (the probe's own sessions); sample with :meth:`baseline`."""
        for side in SIDES:
            conn = self._connect[side]()
            conn.autocommit = True
            with conn.cursor() as cur:
                sqlfiles.run(cur, "common/set_setting.sql", params={
                    "name": "application_name", "value": "migration-backfill-probe", "is_local": False})
                sqlfiles.run(cur, "common/set_setting.sql", params={
                    "name": "statement_timeout", "value": "5000ms", "is_local": False})
            self._conns[side] = conn
        return self

    def sample_once(self, spread: float = 0.0,
                    wait: Callable[[float], Any] | None = None) -> dict[str, float | None]:
        """Time ``LOOKUPS`` lookups per database, ``spread`` seconds apart in all; their median per side (ms).

        Every lookup's time goes into the signal's window (:meth:`latest`)."""
        wait = wait or self._stop.wait
        timings: dict[str, list[float]] = {k: [] for k in self.series}
        gap = spread / LOOKUPS
        for i in range(LOOKUPS):
            key = self._rng.randint(self.key_lo, self.key_hi)
            for k in self.series:
                if k in self._failed:
                    continue
                ms = self._commit() if k == COMMIT else self._lookup(k, key)
                if ms is not None:
                    timings[k].append(ms)
            if gap > 0 and i < LOOKUPS - 1 and wait(gap):
                break  # stopped
        with self._lock:
            for side, values in timings.items():
                self._samples[side].extend(values)
                self._all[side].extend(values)
        return {k: median(v) for k, v in timings.items()}

    def _commit(self) -> float | None:
        """One timed commit probe on the new database (ms); None after it failed (logged once)."""
        try:
            t0 = time.perf_counter()
            with self._conns["new"].cursor() as cur:
                sqlfiles.run(cur, "backfill/probe_commit.sql", params={"prefix": COMMIT_PREFIX})
                cur.fetchone()
            return (time.perf_counter() - t0) * 1000
        except Exception as exc:  # noqa: BLE001 - a failing probe is reported, not fatal
            log.warning("%s: commit probe on the new database failed (%s) - e.g. the role may not call "
                        "pg_logical_emit_message; no commit-latency signal, the lookup probe still runs",
                        self.label, str(exc).strip())
            self._failed.add(COMMIT)
            return None

    def _lookup(self, side: str, key: int) -> float | None:
        name, ids = (("backfill/probe_old.sql", self.es.old_ids()) if side == "legacy"
                     else ("backfill/probe_new.sql", self.es.new_ids()))
        try:
            t0 = time.perf_counter()
            with self._conns[side].cursor() as cur:
                sqlfiles.run(cur, name, ids, {"probe_key": key})
                cur.fetchone()
            return (time.perf_counter() - t0) * 1000
        except Exception as exc:  # noqa: BLE001 - a failing probe is reported, not fatal
            log.warning("%s: latency probe on the %s database failed (%s); no latency signal from it",
                        self.label, side, exc)
            self._failed.add(side)
            return None

    def _loop(self) -> None:
        interval = self.b.probe_interval.total_seconds()
        while not self._stop.is_set():
            self.sample_once(spread=interval)

    def baseline(self, sleep: Callable[[float], None] = time.sleep) -> dict[str, float | None]:
        """The signal's percentile per database over ``baseline_duration`` (sampled before the copy starts)."""
        interval = self.b.probe_interval.total_seconds()
        n = max(5, round(self.b.baseline_duration.total_seconds() / interval))
        got: dict[str, list[float]] = {k: [] for k in self.series}
        before = {k: len(self._all[k]) for k in self.series}
        for _ in range(n):
            self.sample_once(spread=interval, wait=lambda s: sleep(s) and False)
        with self._lock:
            for k in self.series:
                got[k] = self._all[k][before[k]:]
                self._samples[k].clear()
        pct = {k: percentile(v, SIGNAL_PERCENTILE) for k, v in got.items()}
        self.commit_baseline = {"new": pct[COMMIT]} if COMMIT in pct else {}
        return {side: pct[side] for side in SIDES}

    def latest(self) -> dict[str, float | None]:
        """The lookup signal per database: the percentile of the lookups in the window."""
        with self._lock:
            return {side: percentile(list(self._samples[side]), SIGNAL_PERCENTILE) for side in SIDES}

    def latest_commit(self) -> dict[str, float | None]:
        """The commit signal ({"new": ms}, {} without the commit probe), over the same window."""
        with self._lock:
            return ({"new": percentile(list(self._samples[COMMIT]), SIGNAL_PERCENTILE)}
                    if COMMIT in self._samples else {})

    def reset_window(self) -> None:
        """Forget the window's lookups (after a cut: the next signal is measured at the new rate only)."""
        with self._lock:
            for v in self._samples.values():
                v.clear()
