"""The latency-budget controller: run the copy as fast as the operator's budget allows.

Pure (no database, no clock of its own): :class:`RateController` takes one :class:`Sample` of the
signals per decision and returns a :class:`Decision`. The backfill feeds it from
:class:`migration_engine.backfill.probe.Probe` (a timed primary-key lookup on the source and target
tables every ``probe_interval``, on the probe's own connections) and from the application's stats
contract; tests feed it synthetic samples.

The budget (``backfill.throttle.budget``): each latency signal may rise at most
``max_latency_increase_pct`` over its baseline (measured before the first batch), replication lag of
either database at most ``max_replication_lag``. *Pressure* is the share of the budget a signal
uses: for a latency, (value - baseline) / (limit - baseline) - 0 at the baseline, 1.0 at exactly
+``max_latency_increase_pct``, negative below the baseline; for replica lag, lag / max lag. The
worst signal decides. Like gh-ost's and Spirit's throttlers, but continuous:

* pressure > 1: multiplicative decrease (``decrease_factor``; with ``cut_in_proportion`` deeper for a
  larger overshoot - rate x 0.8 / pressure, at least x 0.25), at most once per ``cut_interval``
  decisions, so the signal can show the effect before the next cut (with ``reset_after_cut`` the
  probe forgets its window at a cut, so the next signal is the new rate's alone);
  At ``halt_pressure`` (2: twice the allowance) or more a cut goes straight to ``min_rows_per_second``:
  that is a load peak on the database, not the copy's own edge, and each second at the old rate costs
  the peak's requests;
* pressure < 0.5 after a cut (``fast_recovery``): straight back to the rate before the run of cuts
  (the rate before the peak, not the last step down) - the load peak that forced them is over - and
  additive from there;
* pressure < 0.8 (``CALM``): grow - the budget is there to be used. Slow start first: the rate
  doubles per decision until a signal first reaches ``CALM`` (or the first cut); from then on the
  increase is additive, ``increase_pct`` of the rate where slow start ended per decision (classic
  AIMD: it probes the budget's edge gently and backs off hard). Never above twice the rate the
  copy actually achieved (no wind-up while the database is the bottleneck);
* otherwise (0.8 <= pressure <= 1) hold: close to the budget's edge, still within it.

The rate is for the whole backfill; ``share`` parallel ranges each take their part.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from migration_engine.config import LatencyBudget

CALM = 0.8  # below this share of the budget the rate grows
RECOVER = 0.5  # below this share (after a cut): fast recovery to the rate before the cut
MIN_CUT = 0.25  # a proportional cut keeps at least this share of the rate
SLOW_START_FACTOR = 2.0  # growth per decision until the first signal reaches CALM


@dataclass(frozen=True)
class Sample:
    """One reading of the signals. ``None`` = no reading (no stats contract, no replicas)."""

    latency_ms: dict[str, float | None] = field(default_factory=dict)  # probe lookup latency per database
    app_p95_ms: float | None = None
    lag_seconds: dict[str, float | None] = field(default_factory=dict)  # replica lag per database
    commit_ms: dict[str, float | None] = field(default_factory=dict)  # probe commit latency per database


@dataclass(frozen=True)
class Baseline:
    latency_ms: dict[str, float | None]
    app_p95_ms: float | None = None
    commit_ms: dict[str, float | None] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Baseline:
        return cls(latency_ms=dict(d.get("latency_ms") or {}), app_p95_ms=d.get("app_p95_ms"),
                   commit_ms=dict(d.get("commit_ms") or {}))


@dataclass(frozen=True)
class Decision:
    action: str  # increase | decrease | hold
    rows_per_second: float  # the whole backfill's rate after this decision
    pressure: float | None  # worst signal / its limit; None = no signal at all
    signal: str | None  # which signal, e.g. "new probe latency"
    value: float | None
    limit: float | None

    def text(self) -> str:
        if self.signal is None:
            return f"{self.action} to {self.rows_per_second:,.0f} rows/s (no signal)"
        unit = "s" if "lag" in self.signal else " ms"
        return (f"{self.action} to {self.rows_per_second:,.0f} rows/s: {self.signal} {self.value:.2f}{unit} "
                f"(budget {self.limit:.2f}{unit}, pressure {self.pressure:.2f})")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _limit(baseline: float | None, pct: float, allowance_ms: float | None = None) -> float | None:
    """+``pct`` % over ``baseline``, or ``baseline + allowance_ms`` when an absolute allowance is given."""
    if baseline is None or baseline <= 0:
        return None
    return baseline + allowance_ms if allowance_ms is not None else baseline * (1 + pct / 100)


class RateController:
    def __init__(self, budget: LatencyBudget, baseline: Baseline, *, max_rows_per_second: int = 0) -> None:
        self.b = budget
        self.baseline = baseline
        self.cap = float(max_rows_per_second) if max_rows_per_second > 0 else None
        self.rate = float(budget.start_rows_per_second)
        if self.cap is not None:
            self.rate = min(self.rate, self.cap)
        self.rate = max(self.rate, float(budget.min_rows_per_second))
        self._since_cut = self._cut_interval  # a first breach may cut at once
        self.slow_start = True  # doubling until a signal first reaches CALM, then additive
        self._step: float | None = None  # the additive increase (rows/s per decision) after slow start
        self._before_cut: float | None = None  # the rate before the latest run of cuts (fast recovery's target)
        self._cutting = False  # the latest change was a cut: a further cut keeps _before_cut (the pre-peak rate)
        self.cuts = 0  # cuts so far (a range sharing the pass's controller resets its probe at a new one)

    # the state that one decision hands to the next: a pass's ranges keep it in the control schema
    # (backfill_controller.state), so any range - another thread or another process - makes the next one
    _STATE = ("rate", "_since_cut", "slow_start", "_step", "_before_cut", "_cutting", "cuts")

    def to_dict(self) -> dict[str, Any]:
        return {k.lstrip("_"): getattr(self, k) for k in self._STATE}

    @classmethod
    def from_dict(cls, budget: LatencyBudget, baseline: Baseline, state: dict[str, Any], *,
                  max_rows_per_second: int = 0) -> RateController:
        """A controller continuing from ``state`` (:meth:`to_dict`); an empty state = a fresh one."""
        c = cls(budget, baseline, max_rows_per_second=max_rows_per_second)
        for k in cls._STATE:
            if k.lstrip("_") in state:
                setattr(c, k, state[k.lstrip("_")])
        c.rate = float(c.rate)
        return c

    @property
    def _cut_interval(self) -> int:
        return self.b.cut_interval if self.b.cut_interval is not None else self.b.signal_samples

    @property
    def allowance_ms(self) -> float | None:
        """The probes' absolute allowance (ms): ``max_latency_increase_pct`` of the application's p95 -
        the operator's ``app_p95_ms`` if stated, else the stats contract's baseline - when
        ``probe_allowance`` is ``app_p95``; None without either (each probe may then rise
        ``max_latency_increase_pct`` % over its own baseline)."""
        app = self.b.app_p95_ms if self.b.app_p95_ms is not None else self.baseline.app_p95_ms
        if self.b.probe_allowance != "app_p95" or app is None or app <= 0:
            return None
        return self.b.max_latency_increase_pct / 100 * app

    def _probe_baselines(self) -> list[tuple[str, float | None]]:
        return ([(f"{side} probe latency", ms) for side, ms in self.baseline.latency_ms.items()]
                + [(f"{side} commit latency", ms) for side, ms in self.baseline.commit_ms.items()])

    def limits(self) -> dict[str, float | None]:
        pct, allowance = self.b.max_latency_increase_pct, self.allowance_ms
        out = {name: _limit(ms, pct, allowance) for name, ms in self._probe_baselines()}
        out["application p95"] = _limit(self.baseline.app_p95_ms, pct)
        return out

    def pressure(self, s: Sample) -> tuple[float | None, str | None, float | None, float | None]:
        """(share of the budget used, signal name, value, limit) of the worst signal that has a reading."""
        worst: tuple[float | None, str | None, float | None, float | None] = (None, None, None, None)
        bases = dict(self._probe_baselines()) | {"application p95": self.baseline.app_p95_ms}
        limits = self.limits()
        readings = ([(f"{side} probe latency", v) for side, v in s.latency_ms.items()]
                    + [(f"{side} commit latency", v) for side, v in s.commit_ms.items()]
                    + [("application p95", s.app_p95_ms)])
        max_lag = self.b.max_replication_lag.total_seconds()
        for name, value in readings:
            base, limit = bases.get(name), limits.get(name)
            if value is None or limit is None:
                continue
            p = (value - base) / (limit - base)
            if worst[0] is None or p > worst[0]:
                worst = (p, name, value, limit)
        for side, value in s.lag_seconds.items():
            if value is None:
                continue
            p = value / max_lag
            name, limit = f"{side} replication lag", max_lag
            if worst[0] is None or p > worst[0]:
                worst = (p, name, value, limit)
        return worst

    def decide(self, s: Sample, achieved_rows_per_second: float | None = None) -> Decision:
        """One decision on a fresh sample; ``achieved_rows_per_second``: what the copy really did lately."""
        p, name, value, limit = self.pressure(s)
        self._since_cut += 1
        action = "hold"
        if p is not None and p >= CALM and self.slow_start:
            self._end_slow_start()
        if p is not None and p > 1.0:
            if self._since_cut >= self._cut_interval and self.rate > self.b.min_rows_per_second:
                factor = self.b.decrease_factor
                if self.b.cut_in_proportion:
                    # latency over the baseline ~ proportional to the rate: aim at CALM, never less than
                    # a quarter of the rate in one cut, never a smaller cut than decrease_factor
                    factor = max(MIN_CUT, min(factor, CALM / p))
                if self.b.halt_pressure is not None and p >= self.b.halt_pressure:
                    factor = 0.0  # far over: a load peak, not the copy's own edge - down to the minimum at once
                if not self._cutting:
                    self._before_cut = self.rate  # the rate before this run of cuts: fast recovery's target
                self._cutting = True
                self.rate = max(float(self.b.min_rows_per_second), self.rate * factor)
                self._since_cut = 0
                self.cuts += 1
                action = "decrease"
        elif p is None or p < CALM:
            if self.slow_start:
                grown = self.rate * SLOW_START_FACTOR
            elif (self.b.fast_recovery and p is not None and p < RECOVER and self._before_cut is not None
                  and self.rate < self._before_cut):
                # well within the budget again (the load peak that forced the cut is over): back to the
                # rate before the cut at once, additive from there
                grown = self._before_cut
            else:
                assert self._step is not None
                grown = self.rate + self._step
            if achieved_rows_per_second is not None and achieved_rows_per_second > 0:
                grown = min(grown, max(self.rate, 2 * achieved_rows_per_second))
            if self.cap is not None:
                grown = min(grown, self.cap)
            if grown > self.rate:
                self.rate = grown
                self._cutting = False
                action = "increase"
        return Decision(action, self.rate, p, name, value, limit)

    def _end_slow_start(self) -> None:
        self.slow_start = False
        self._step = max(1.0, self.rate * self.b.increase_pct / 100)

    def worker_rate(self, share: int) -> float:
        """This range's part of the rate."""
        return self.rate / max(1, share)


def median(values: list[float]) -> float | None:
    if not values:
        return None
    v = sorted(values)
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100, nearest rank) of ``values``; None for no values."""
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q / 100 * len(v)) - 1))]
