"""Per-table query latency from pg_stat_statements counters: which statements touch which table,
what they did since the previous sample, and the p50/p95/p99 that implies. Pure functions.

Why an estimate, and which one: pg_stat_statements keeps, per statement, cumulative ``calls``,
``total_exec_time``, ``mean``/``stddev``/``min``/``max`` - no histogram, so no true percentile
exists. The sampler therefore

1. takes, per statement, the difference of ``calls`` and ``total_exec_time`` since the previous
   sample (the counters it saw are kept in ``perf_statement_counters``): the statement's mean
   latency *in this interval* and how many calls it had (a counter that went down was reset: the
   current value is the interval; a statement seen for the first time counts from its cumulative
   figures, i.e. since pg_stat_statements' last reset);
2. attributes the statement to every sampled table its text names after FROM / JOIN / UPDATE /
   INTO / USING / TABLE / ONLY (a join counts for each table it touches);
3. models each statement's latency as a normal distribution with the interval mean and the
   statement's (lifetime) standard deviation, clipped to its lifetime [min, max], and takes the
   p50/p95/p99 of the call-weighted mixture of those distributions.

The page labels these "estimated from pg_stat_statements". Where the application reports its own
latency (``path_stats``, the stats contract) that p95 is measured, not estimated: see
``app_table_latency``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

QUANTILES = (0.50, 0.95, 0.99)
_KEYWORD = r"(?:\b(?:from|join|update|into|using|table|only)\s+|,\s*)"
HIDDEN_QUERY = "<insufficient privilege>"


@dataclass(frozen=True)
class Statement:
    """One pg_stat_statements row (cumulative counters)."""

    dbid: int
    userid: int
    queryid: int
    query: str
    calls: int
    total_ms: float
    stddev_ms: float
    min_ms: float
    max_ms: float

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.dbid, self.userid, self.queryid)


@dataclass(frozen=True)
class Interval:
    """What one statement did since the previous sample."""

    statement: Statement
    calls: int
    total_ms: float

    @property
    def mean_ms(self) -> float:
        return self.total_ms / self.calls if self.calls else 0.0


@dataclass(frozen=True)
class TableLatency:
    table: str
    calls: int
    statements: int
    mean_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None


def intervals(statements: Iterable[Statement],
              previous: Mapping[tuple[int, int, int], tuple[int, float]]) -> list[Interval]:
    """Each statement's calls and time since the previous sample (``previous``: key -> (calls, total_ms))."""
    out = []
    for s in statements:
        before = previous.get(s.key)
        if before is None or s.calls < before[0] or s.total_ms < before[1]:
            calls, total = s.calls, s.total_ms  # first seen, or the counters were reset since
        else:
            calls, total = s.calls - before[0], s.total_ms - before[1]
        if calls > 0:
            out.append(Interval(s, calls, max(total, 0.0)))
    return out


def _pattern(schema: str, table: str, *, bare: bool) -> re.Pattern[str]:
    rel = rf'(?:"{re.escape(table)}"|{re.escape(table)}(?![\w$]))'
    qualified = rf'(?:"{re.escape(schema)}"|{re.escape(schema)})\s*\.\s*{rel}'
    target = rf"(?:{qualified}|(?<![\w.\"]){rel})" if bare else qualified
    return re.compile(_KEYWORD + target, re.IGNORECASE)


def attribute(queries: Iterable[str], tables: Sequence[str]) -> dict[str, list[int]]:
    """Which tables (``schema.table``) each query names: table -> indexes of the queries.

    A bare table name (no schema) is attributed only when it is unambiguous among ``tables``, or to
    the ``public`` one (the default search_path).
    """
    names = [t.split(".", 1) for t in tables]
    by_rel: dict[str, list[str]] = {}
    for schema, rel in names:
        by_rel.setdefault(rel.lower(), []).append(schema)
    patterns = {}
    for schema, rel in names:
        owners = by_rel[rel.lower()]
        bare = len(owners) == 1 or schema == "public"
        patterns[f"{schema}.{rel}"] = _pattern(schema, rel, bare=bare)
    found: dict[str, list[int]] = {t: [] for t in patterns}
    for i, q in enumerate(queries):
        if not q or q == HIDDEN_QUERY:
            continue
        for table, rx in patterns.items():
            if rx.search(q):
                found[table].append(i)
    return found


def _cdf(x: float, iv: Interval) -> float:
    s = iv.statement
    lo, hi = min(s.min_ms, iv.mean_ms), max(s.max_ms, iv.mean_ms)
    if x < lo:
        return 0.0
    if x >= hi:
        return 1.0
    sd = s.stddev_ms
    if sd <= 0:
        return 1.0 if x >= iv.mean_ms else 0.0
    return 0.5 * (1 + math.erf((x - iv.mean_ms) / (sd * math.sqrt(2))))


def mixture_quantile(parts: Sequence[Interval], q: float) -> float | None:
    """The ``q`` quantile of the call-weighted mixture of the statements' clipped normal latencies."""
    weight = sum(p.calls for p in parts)
    if not parts or weight <= 0:
        return None
    lo = min(min(p.statement.min_ms, p.mean_ms) for p in parts)
    hi = max(max(p.statement.max_ms, p.mean_ms) for p in parts)
    if hi <= lo:
        return lo

    def mass(x: float) -> float:
        return sum(p.calls * _cdf(x, p) for p in parts) / weight

    for _ in range(60):
        mid = (lo + hi) / 2
        if mass(mid) >= q:
            hi = mid
        else:
            lo = mid
    return hi


def table_latency(parts_by_table: Mapping[str, Sequence[Interval]]) -> dict[str, TableLatency]:
    out = {}
    for table, parts in parts_by_table.items():
        calls = sum(p.calls for p in parts)
        if not calls:
            continue
        p50, p95, p99 = (mixture_quantile(parts, q) for q in QUANTILES)
        out[table] = TableLatency(table, calls, len(parts), sum(p.total_ms for p in parts) / calls, p50, p95, p99)
    return out


def from_statements(statements: Sequence[Statement], previous: Mapping[tuple[int, int, int], tuple[int, float]],
                    tables: Sequence[str]) -> tuple[dict[str, TableLatency], list[Statement]]:
    """Per-table latency of this interval, and the statements that touch a sampled table (the
    counters worth remembering for the next sample)."""
    attributed = attribute([s.query for s in statements], tables)
    used = sorted({i for idx in attributed.values() for i in idx})
    by_key = {iv.statement.key: iv for iv in intervals([statements[i] for i in used], previous)}
    parts = {t: [by_key[statements[i].key] for i in idx if statements[i].key in by_key]
             for t, idx in attributed.items()}
    return table_latency(parts), [statements[i] for i in used]


def app_table_latency(rows: Iterable[Mapping], entity_tables: Mapping[tuple[str, str], str]) -> dict[str, TableLatency]:
    """The application's measured p95 per table from ``path_stats`` rows (entity, path, requests, p95_ms).

    ``entity_tables``: (entity, path) -> the ``schema.table`` that path reads and writes. The
    contract has p95 only (merged as the maximum across minutes and instances): p50/p99 stay None.
    """
    merged: dict[str, dict] = {}
    for r in rows:
        table = entity_tables.get((r["entity"], r["path"]))
        if table is None or not r["requests"]:
            continue
        m = merged.setdefault(table, {"calls": 0, "p95": None, "n": 0})
        m["calls"] += int(r["requests"])
        m["n"] += 1
        if r["p95_ms"] is not None:
            m["p95"] = max(m["p95"] or 0.0, float(r["p95_ms"]))
    return {t: TableLatency(t, m["calls"], m["n"], None, None, m["p95"], None) for t, m in merged.items()}
