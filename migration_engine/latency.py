"""Latency histograms of the stats contract: fixed bucket bounds shared by the application client
(which counts requests per bucket) and the read rollout (which reads an interval's p95 from them).

Counts per bucket are additive - across flushes, instances and minutes - so the difference of two
cumulative snapshots is the exact distribution of the requests between them; a percentile read
from it is the upper bound of the bucket the rank falls in (conservative: never lower than the
true value by more than one bucket).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence

# Upper bounds (ms) of the buckets; one more bucket holds everything above the last bound.
LATENCY_BOUNDS_MS: tuple[float, ...] = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
OVERFLOW_MS = 2.0 * LATENCY_BOUNDS_MS[-1]


def histogram(latencies_ms: Iterable[float]) -> list[int]:
    """Counts per bucket (len(LATENCY_BOUNDS_MS) + 1): bucket i holds values <= bound i (and > bound i-1)."""
    counts = [0] * (len(LATENCY_BOUNDS_MS) + 1)
    for value in latencies_ms:
        counts[bisect.bisect_left(LATENCY_BOUNDS_MS, value)] += 1
    return counts


def minus(a: Sequence[int], b: Sequence[int]) -> tuple[int, ...]:
    """Element-wise ``a - b`` clamped at 0 (a stats reset reads as no data); () if ``a`` is empty."""
    if not a:
        return ()
    b = list(b) + [0] * (len(a) - len(b))
    return tuple(max(0, int(x) - int(y)) for x, y in zip(a, b, strict=False))


def percentile(hist: Sequence[int], q: float = 0.95) -> float | None:
    """The upper bound of the bucket holding the ``q`` rank (nearest rank); None without samples.
    The open top bucket reports ``OVERFLOW_MS`` (twice the last bound: finite, so it fits in JSON)."""
    total = sum(hist)
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for i, n in enumerate(hist):
        seen += n
        if seen >= rank:
            return float(LATENCY_BOUNDS_MS[i]) if i < len(LATENCY_BOUNDS_MS) else OVERFLOW_MS
    return OVERFLOW_MS


def percentile_floor(hist: Sequence[int], q: float = 0.95) -> float | None:
    """The lower bound of the bucket holding the ``q`` rank: the true percentile is at least this.
    A degradation is only declared when this floor is above the limit (bucket edges never trip it)."""
    upper = percentile(hist, q)
    if upper is None:
        return None
    if upper == OVERFLOW_MS:
        return float(LATENCY_BOUNDS_MS[-1])
    i = LATENCY_BOUNDS_MS.index(upper)
    return 0.0 if i == 0 else float(LATENCY_BOUNDS_MS[i - 1])
