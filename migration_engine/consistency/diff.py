"""Range-checksum diff of one entity across two databases (reladiff / pt-table-checksum style).

1. The key space (old key = new legacy-id column) is cut into chunks of about
   ``consistency.chunk_size`` rows. Worker threads (``consistency.parallelism``, one connection per
   database each) take chunks from a queue.
2. For a chunk, each server computes - in SQL, over the mapped in-scope rows only - a count and a
   checksum for each of ``bisect_factor`` sub-ranges, in ONE query per side. Equal chunks cost two
   queries and ship a few dozen numbers.
3. A differing sub-range is split again the same way until it holds at most ``bisect_min_rows``
   rows (or one side has none), then both sides' rows are read in key order, a page at a time,
   and merged: missing in new, missing in old (extra in new), changed with the columns that differ.
   A row that is in scope on one side only (listing SOLD in the old table but still 'active' in
   the new) is "changed", naming the scope column.
4. In-flight writes (dual-write lands in the new database a few ms after the old) would show up
   as differences, so every differing key (up to ``max_stored_keys`` per kind) is read again on
   both sides and kept only if it still differs ``recheck_delay`` after it was first seen; counts
   are corrected. The delay is not an idle sleep: the keys are re-read once right after the scan
   (a landed write clears then), and only keys first seen less than ``recheck_delay`` ago that
   still differ wait - for the remainder of their delay - and are read once more. A difference
   found early in a long scan has aged past the delay by the end of it and costs no wait, and so
   does one whose rows are dated (by the version column, on each server) older than the delay
   where no in-flight write can explain it (consistency/dating.py).

Memory stays bounded by (threads x page size) plus the stored keys: no table is ever loaded.
Why a thread pool inside one task and not one Airflow mapped task per chunk: a mapped task
instance costs seconds of scheduling and a process, a chunk of 10k rows costs milliseconds; Airflow
maps over *checks* (one task per entity / reference / count parity) and the pool works the chunks.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from typing import Any

from migration_engine import sqlfiles
from migration_engine.config import MigrationConfig
from migration_engine.consistency import dating, keys
from migration_engine.consistency.keys import KeyType
from migration_engine.consistency.plan import EntityPlan, build_entity_plan, execute
from migration_engine.consistency.results import CheckResult, ConsistencyError, Finding, cap_findings
from migration_engine.consistency.sessions import SessionPool

log = logging.getLogger(__name__)

ROW_KINDS = ("missing_in_new", "missing_in_old", "changed")
_VALUE_REPR_MAX = 200
_sleep = time.sleep  # the recheck's wait (tests replace it to see how long it waited)


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > _VALUE_REPR_MAX:
        return value[:_VALUE_REPR_MAX] + "…"
    return value


@dataclass
class _Acc:
    old_count: int = 0
    new_count: int = 0
    counts: Counter = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    rows_compared: int = 0
    queries: int = 0
    leaves: int = 0
    differing_chunks: int = 0
    seen: dict[int, float] = field(default_factory=dict)  # key -> monotonic time first found differing

    def merge(self, other: _Acc, cap: int) -> None:
        self.old_count += other.old_count
        self.new_count += other.new_count
        self.counts.update(other.counts)
        self.findings = cap_findings(self.findings + other.findings, cap)
        self.rows_compared += other.rows_compared
        self.queries += other.queries
        self.leaves += other.leaves
        self.differing_chunks += other.differing_chunks
        for key, at in other.seen.items():
            self.seen[key] = min(at, self.seen.get(key, at))
        self._prune_seen()

    def _prune_seen(self) -> None:
        """Keep first-seen times only for the stored findings (bounded like them)."""
        if len(self.seen) > len(self.findings):
            kept = {f.key for f in self.findings}
            self.seen = {k: v for k, v in self.seen.items() if k in kept}


Row = tuple[bool, str, list, Any]  # (in_scope, digest, values, new key or None)


class EntityDiffer:
    def __init__(self, cfg: MigrationConfig, plan: EntityPlan, old: SessionPool, new: SessionPool):
        self.cfg = cfg
        self.c = cfg.consistency
        self.plan = plan
        self.old = old
        self.new = new
        self.page_size = max(self.c.bisect_min_rows * 2, 500)
        self._old_ids = plan.old_identifiers()
        self._new_ids = plan.new_identifiers()
        self._old_params = plan.old_params()
        self._new_params = plan.new_params()
        self.kt = plan.key_type
        self.waited = 0.0  # seconds the re-check waited for young differences (reported in details)
        self.settled_by_version = 0  # young differences final at once: their rows are older than the delay
        self.waited_keys = 0  # young differences that waited for the rest of their delay
        self.first_written: dating.FirstWritten | None = None  # read once, when a young difference needs it
        self._old_key_ids = {"table": plan.old_identifiers()["table"], "key": plan.entity.key,
                             "scope_column": self._old_ids["scope_column"]}
        self._new_key_ids = {"table": plan.new_table_identifiers()["table"], "key": plan.entity.legacy_id_column,
                             "scope_column": self._new_ids["scope_column"]}
        self._lookups = dict(plan.lookups)
        self._scope_label = f"{plan.new_scope.column if plan.new_scope else plan.entity.scope.column} (scope)" \
            if plan.entity.scope else "(scope)"

    # -- queries ---------------------------------------------------------------------------
    def _query(self, side: str, name: str, params: dict, acc: _Acc | None = None) -> list[tuple]:
        pool, ids, base = (self.old, self._old_ids, self._old_params) if side == "old" else \
            (self.new, self._new_ids, self._new_params)
        with pool.get().cursor() as cur:
            execute(cur, name, ids, {**base, **params})
            rows = cur.fetchall()
        if acc is not None:
            acc.queries += 1
        return rows

    def buckets(self, side: str, lo: Any, hi: Any, boundaries: list, acc: _Acc) -> dict[int, tuple[int, int]]:
        """Count and checksum per sub-range of [lo, hi): bucket ``b`` lies between ``boundaries[b-1]``
        and ``boundaries[b]`` (``width_bucket``: below the first is bucket 0)."""
        name = "consistency/old_buckets.sql" if side == "old" else "consistency/new_buckets.sql"
        rows = self._query(side, name, {"lo": lo, "hi": hi, "boundaries": keys.array_literal(boundaries)}, acc)
        return {int(b): (int(n), int(s)) for b, n, s in rows}

    def page(self, side: str, lo: Any, hi: Any, after: Any, upto: Any, acc: _Acc | None = None,
             only: list | None = None) -> list[tuple[Any, Row]]:
        """One page of rows with key in [lo, hi), > ``after``, <= ``upto`` (None: no bound), in key order."""
        name = "consistency/old_rows.sql" if side == "old" else "consistency/new_rows.sql"
        page = self._query(side, name, {"lo": lo, "hi": hi, "after": after, "upto": upto,
                                        "keys": None if only is None else keys.array_literal(only),
                                        "page_size": self.page_size}, acc)
        v = self.kt.value
        return [(v(rec[0]), (bool(rec[1]), rec[2], rec[3], rec[4] if side == "new" else None)) for rec in page]

    def rows(self, side: str, lo: Any, hi: Any, acc: _Acc | None = None,
             keys: list | None = None) -> Iterator[tuple[Any, Row]]:
        """Rows with key in [lo, hi) in key order, paged (keyset, never OFFSET)."""
        after = None
        while True:
            page = self.page(side, lo, hi, after, None, acc, keys)
            yield from page
            if len(page) < self.page_size:
                return
            after = page[-1][0]

    def boundaries(self, side: str, lo: Any, hi: Any, every: int, acc: _Acc | None = None) -> list:
        """Every ``every``-th in-scope key of [lo, hi) on one side, in key order (from its index)."""
        pool, ids, params = (self.old, self._old_key_ids, self._old_params) if side == "old" else \
            (self.new, self._new_key_ids, self._new_params)
        with pool.get().cursor() as cur:
            sqlfiles.run(cur, "consistency/key_boundaries.sql", ids,
                         {"lo": lo, "hi": hi, "every": max(1, every), **params})
            out = [self.kt.value(r[0]) for r in cur.fetchall()]
        if acc is not None:
            acc.queries += 1
        return out

    # -- comparison ------------------------------------------------------------------------
    def classify(self, key: int, o: Row | None, n: Row | None) -> Finding | None:
        o_in = bool(o and o[0])
        n_in = bool(n and n[0])
        if not (o_in or n_in):
            return None
        flags = {"old_in_scope": o_in, "new_in_scope": n_in}
        if o is None:
            return Finding("missing_in_old", key, (), {**flags, "new_key": n[3]})
        if n is None:
            return Finding("missing_in_new", key, (), flags)
        if o[1] == n[1]:  # the digests of old_rows.sql / new_rows.sql decide equality
            return None if o_in == n_in else Finding("changed", key, (self._scope_label,),
                                                     {**flags, "new_key": n[3]})
        # strict: 10 (int) and 10.0 (float) differ, as their text forms do
        cols = [i for i, (a, b) in enumerate(zip(o[2], n[2], strict=True)) if a != b or type(a) is not type(b)]
        names = [self.plan.columns[i] for i in cols] or ["(equal values, different text form)"]
        detail = {**flags, "new_key": n[3],
                  "old": {self.plan.columns[i]: _short(o[2][i]) for i in cols},
                  "new": {self.plan.columns[i]: _short(n[2][i]) for i in cols}}
        via = {c: self._lookups[c] for c in names if c in self._lookups}
        if via:
            detail["compared_as"] = via  # lookup columns are compared as the old value they stand for
        return Finding("changed", key, tuple(names), detail)

    def _compare(self, old_rows: list, new_rows: list, acc: _Acc) -> None:
        """Compare two windows holding the same key span (matched by equality, no key order needed)."""
        o, n = dict(old_rows), dict(new_rows)
        for key in list(o) + [k for k in n if k not in o]:
            acc.rows_compared += 1
            finding = self.classify(key, o.get(key), n.get(key))
            if finding is not None:
                acc.counts[finding.kind] += 1
                acc.findings.append(finding)
                acc.seen.setdefault(key, time.monotonic())

    def _merge_rows(self, lo: Any, hi: Any, acc: _Acc) -> None:
        """Compare every row of [lo, hi) on both sides, a window of at most ``page_size`` rows per
        side at a time.

        A window ends at a key the server returned (the last key of a full page), and the other
        side is read up to that key, so both sides of a window hold the same key span and are
        matched by equality: keys are never compared in Python, any server order works (a text
        key's collation too), and memory stays bounded however one-sided the range is.
        """
        acc.leaves += 1
        full = self.page_size
        after = None
        while True:
            o = self.page("old", lo, hi, after, None, acc)
            if len(o) == full:
                upto = o[-1][0]
                n = self.page("new", lo, hi, after, upto, acc)
                if len(n) == full and n[-1][0] != upto:
                    upto = n[-1][0]
                    o = self.page("old", lo, hi, after, upto, acc)
            else:
                n = self.page("new", lo, hi, after, None, acc)
                if len(n) < full:
                    self._compare(o, n, acc)
                    break
                upto = n[-1][0]
                o = self.page("old", lo, hi, after, upto, acc)
            self._compare(o, n, acc)
            after = upto
        acc.findings = cap_findings(acc.findings, self.c.max_stored_keys)
        acc._prune_seen()

    def _split(self, lo: Any, hi: Any, counts: tuple[int, int], acc: _Acc, *, top: bool) -> list | None:
        """The keys that cut [lo, hi) into sub-ranges, or None when it cannot be cut further.

        Integer keys: every ``width`` keys (their density is known: no query). Any other type: every
        n-th in-scope key of the side holding more rows, read from the server in key order."""
        if self.kt.integer and lo is not None and hi is not None:
            if hi - lo <= 1:
                return None
            width = bucket_width(self.c, lo, hi, top=top)
            return list(range(lo + width, hi, width))
        # other types, and the open-ended first / last chunk of a sparse integer key space
        side = "old" if counts[0] >= counts[1] else "new"
        cuts = self.boundaries(side, lo, hi, math.ceil(max(counts) / self.c.bisect_factor), acc)
        return cuts or None

    def _range(self, lo: Any, hi: Any, acc: _Acc, *, top: bool, cuts: list | None = None,
               counts: tuple[int, int] = (0, 0)) -> bool:
        """Compare [lo, hi); returns whether anything differed at checksum level.

        A chunk (``top``) is split at once into sub-ranges of about ``bisect_min_rows`` rows (the
        GROUP BY returns them in the same single scan), so a difference usually costs one more
        query per side, for its rows; a denser sub-range is split ``bisect_factor`` ways again.
        ``cuts``: the chunk's sub-range boundaries when known (non-integer keys: from the key scan
        that cut the chunks).
        """
        if cuts is None:
            cuts = self._split(lo, hi, counts, acc, top=top)
            if cuts is None and not top:  # one key (integer) or one row: compare the rows
                self._merge_rows(lo, hi, acc)
                return True
            cuts = cuts or []
        ob = self.buckets("old", lo, hi, cuts, acc)
        nb = self.buckets("new", lo, hi, cuts, acc)
        if top:
            acc.old_count += sum(n for n, _ in ob.values())
            acc.new_count += sum(n for n, _ in nb.values())
        edges = [lo, *cuts, hi]
        differed = False
        for b in sorted(set(ob) | set(nb)):
            oc, osum = ob.get(b, (0, 0))
            nc, nsum = nb.get(b, (0, 0))
            if oc == nc and osum == nsum:
                continue
            differed = True
            blo, bhi = edges[b], edges[b + 1]
            if max(oc, nc) <= self.c.bisect_min_rows or oc == 0 or nc == 0:
                self._merge_rows(blo, bhi, acc)
            else:
                self._range(blo, bhi, acc, top=False, counts=(oc, nc))
        return differed

    def compare_chunk(self, lo: Any, hi: Any, cuts: list | None = None) -> _Acc:
        acc = _Acc()
        if self._range(lo, hi, acc, top=True, cuts=cuts):
            acc.differing_chunks = 1
        return acc

    # -- re-check --------------------------------------------------------------------------
    def recheck(self, acc: _Acc, sleep: Callable[[float], None] | None = None) -> int:
        """Re-read every stored differing key; keep it only if it still differs ``recheck_delay`` after
        it was first seen. Returns how many cleared.

        Round 1 reads every key at once. A key that still differs and was first seen at least
        ``recheck_delay`` ago is final; the younger ones wait only for the rest of their delay and
        are read once more (round 2). So the shipped delay costs nothing for differences found
        early in the scan, and never a fixed sleep.
        """
        sleep = sleep or _sleep
        delay = self.c.recheck_delay.total_seconds()
        pending = [f for f in acc.findings if f.kind in ROW_KINDS]
        if not pending:
            return 0
        kept = [f for f in acc.findings if f.kind not in ROW_KINDS]
        cleared = 0
        now = time.monotonic()
        first_round = True
        while pending:
            read_at = time.monotonic()
            still, n_cleared = self._reread(acc, pending)
            cleared += n_cleared
            young = [f for f in still if acc.seen.get(f.key, now) + delay > read_at]
            kept += [f for f in still if acc.seen.get(f.key, now) + delay <= read_at]
            if young and first_round:
                dated = self._settled(young)
                self.settled_by_version += len(dated)
                kept += [f for f in young if f.key in dated]
                young = [f for f in young if f.key not in dated]
            first_round = False
            pending = young
            if pending:
                self.waited_keys += len(pending)
                wait = max(acc.seen.get(f.key, now) for f in pending) + delay - time.monotonic()
                if wait > 0:
                    sleep(wait)
                    self.waited += wait
                for f in pending:  # after the wait every pending key has aged past its delay
                    acc.seen[f.key] = min(acc.seen.get(f.key, now), time.monotonic() - delay)
        acc.findings = kept
        return cleared

    def _settled(self, findings: list[Finding]) -> set:
        """The keys of ``findings`` (still differing, younger than the delay) that are final without
        waiting: their rows are dated older than ``recheck_delay`` (consistency/dating.py)."""
        version = self.plan.version_columns
        if version is None:
            return set()
        if self.first_written is None:
            self.first_written = dating.first_written(self.old.get(), self.cfg)
            log.info("diff %s: re-check dating: %s", self.plan.name, self.first_written.reason)
        first, hard = self.first_written.sides, frozenset(self.plan.entity.hard_deletes)
        wanted = {side: sorted({f.key for f in findings if side in dating.needs(f, first, hard)})
                  for side in dating.SIDES}
        if not (wanted["old"] or wanted["new"]):
            return set()
        e, delay = self.plan.entity, self.c.recheck_delay
        old = dating.settled_rows(self.old, self._old_key_ids["table"], e.key, version[0], wanted["old"], delay,
                                  self.kt.value)
        new = dating.settled_rows(self.new, self._new_key_ids["table"], e.legacy_id_column, version[1],
                                  wanted["new"], delay, self.kt.value)
        return {f.key for f in findings if dating.final_now(f, old, new, first, hard)}

    def _reread(self, acc: _Acc, findings: list[Finding]) -> tuple[list[Finding], int]:
        """Read ``findings``' keys again on both sides; (what still differs, how many cleared)."""
        keys = sorted({f.key for f in findings})  # sorted only to send a stable list; any key type
        old_now = dict(self.rows("old", None, None, acc, keys=keys))
        new_now = dict(self.rows("new", None, None, acc, keys=keys))
        cleared = 0
        still: list[Finding] = []
        for f in findings:
            o, n = old_now.get(f.key), new_now.get(f.key)
            acc.old_count += int(bool(o and o[0])) - int(f.detail.get("old_in_scope", False))
            acc.new_count += int(bool(n and n[0])) - int(f.detail.get("new_in_scope", False))
            acc.counts[f.kind] -= 1
            now = self.classify(f.key, o, n)
            if now is None:
                cleared += 1
                continue
            acc.counts[now.kind] += 1
            still.append(now)
        return still, cleared


def bucket_width(c, lo: int, hi: int, *, top: bool) -> int:
    """Keys per sub-range of one checksum query over [lo, hi) (``top``: a whole chunk)."""
    fanout = c.bisect_factor
    if top:
        fanout = max(fanout, math.ceil(c.chunk_size / c.bisect_min_rows))
    return max(1, math.ceil((hi - lo) / fanout))


DENSE_ENOUGH = 0.5  # rows per key value at or above which integer keys are chunked by arithmetic


def dense_enough(rows: int, lo: int, hi: int) -> bool:
    """Whether integer keys in [lo, hi) are dense enough to chunk by arithmetic (no scan).

    With unique keys at density d (rows / (hi - lo)) a chunk ``chunk_size / d`` keys wide holds at
    most ``chunk_size / d`` rows, so at d >= ``DENSE_ENOUGH`` no chunk holds more than twice
    ``chunk_size``, however the keys are spread. Below it (gaps, or a few keys far from the rest)
    arithmetic could put every row in one chunk and leave the other workers idle; those key spaces
    are cut at every ``bisect_min_rows``-th key read from the index, as other key types are."""
    return rows >= DENSE_ENOUGH * (hi - lo)


def _chunks(lo: int, hi: int, rows: int, chunk_size: int) -> list[Chunk]:
    """Integer keys: ranges of about ``chunk_size`` rows each (width from the observed key density)."""
    if hi <= lo:
        return []
    width = max(1, math.ceil((hi - lo) * chunk_size / max(rows, 1)))
    return [Chunk(start, min(hi, start + width)) for start in range(lo, hi, width)]


@dataclass(frozen=True)
class Chunk:
    """[lo, hi) of the key (None: unbounded); ``cuts``: its checksum sub-range boundaries when
    known up front (non-integer keys), else the diff computes them (integer arithmetic)."""

    lo: Any
    hi: Any
    cuts: tuple | None = None


def boundary_chunks(fine: list, per_chunk: int) -> list[Chunk]:
    """Chunks of ``per_chunk`` sub-ranges from the sorted sub-range boundaries ``fine`` (every
    ``bisect_min_rows``-th key): chunk edges are every ``per_chunk``-th boundary, the first and
    last chunk are open-ended (keys below the first / above the last boundary of either side)."""
    per = max(1, per_chunk)
    edge_at = list(range(per - 1, len(fine), per))
    out, start = [], -1
    for i in [*edge_at, len(fine)]:
        lo = fine[start] if start >= 0 else None
        hi = fine[i] if i < len(fine) else None
        out.append(Chunk(lo, hi, tuple(fine[start + 1:i])))
        start = i
    return out


def _bounds(pool: SessionPool, name: str, ids: dict, kt: KeyType | None = None) -> tuple[Any, Any, int]:
    with pool.get().cursor() as cur:
        sqlfiles.run(cur, name, ids)
        lo, hi, n = cur.fetchone()
    value = kt.value if kt is not None else (lambda v: None if v is None else int(v))
    return value(lo), value(hi), int(n)


def entity_chunks(cfg: MigrationConfig, plan: EntityPlan, old: SessionPool,
                  new: SessionPool) -> tuple[list[Chunk], int, int]:
    """The key-range chunks of one entity and each side's row count (rows with a key).

    Integer keys dense enough (``dense_enough``): from both sides' min/max (arithmetic, no scan).
    Other keys, and sparse or skewed integer keys: every ``bisect_min_rows``-th key of the side with
    more rows, in key order (one index scan), grouped into chunks of about ``chunk_size`` rows."""
    e = plan.entity
    kt = plan.key_type
    olo, ohi, on = _bounds(old, "consistency/key_bounds.sql", {"table": plan.old_identifiers()["table"], "key": e.key},
                           kt)
    nlo, nhi, nn = _bounds(new, "consistency/key_bounds.sql", {"table": plan.new_table_identifiers()["table"],
                                                               "key": e.legacy_id_column}, kt)
    c = cfg.consistency
    if not (on or nn):
        return [], on, nn
    if kt.integer:
        lo = min(v for v in (olo, nlo) if v is not None)
        hi = max(v for v in (ohi, nhi) if v is not None) + 1
        if dense_enough(max(on, nn), lo, hi):
            return _chunks(lo, hi, max(on, nn), c.chunk_size), on, nn
        # sparse or skewed (e.g. a few keys far above the rest): cut where the rows really are
    differ = EntityDiffer(cfg, plan, old, new)
    fine = differ.boundaries("old" if on >= nn else "new", None, None, c.bisect_min_rows)
    return boundary_chunks(fine, math.ceil(c.chunk_size / c.bisect_min_rows)), on, nn


def work_order(chunks: list[Chunk]) -> list[Chunk]:
    """The order the workers take the chunks in: the highest one first, then from the lowest up.

    The top of a key space holds the newest rows (and keys only one side has, beyond the other's
    range, in the open-ended last chunk): where differences and in-flight writes are most likely.
    Found first, they have aged past ``recheck_delay`` by the end of the scan and the re-check
    need not wait for them. The order changes nothing else: every chunk is compared once."""
    return chunks[-1:] + chunks[:-1]


def describe_range(chunks: list[Chunk]) -> str:
    if not chunks:
        return "-"
    lo, hi = chunks[0].lo, chunks[-1].hi
    return f"{'(lowest)' if lo is None else lo}..{'(highest)' if hi is None else hi}"


def diff_entity(cfg: MigrationConfig, name: str, connect_legacy: Callable[[], Any],
                connect_new: Callable[[], Any], *, progress: Callable[[str], None] | None = None) -> CheckResult:
    """Diff one entity; returns a CheckResult (status ``error`` with a clear message if it can't run)."""
    started = time.monotonic()
    c = cfg.consistency
    say = progress or log.info
    with SessionPool(connect_legacy, c.statement_timeout, label="legacy") as old, \
            SessionPool(connect_new, c.statement_timeout, label="new") as new:
        try:
            plan = build_entity_plan(cfg, name, old.get(), new.get())
        except ConsistencyError as exc:
            return CheckResult(name, "entity", "error", counts={"error": 1}, message=str(exc),
                               findings=[Finding("error", name, (), {"message": str(exc)})],
                               duration_s=time.monotonic() - started)
        for note in plan.notes:
            say(f"diff {name}: note: {note}")
        differ = EntityDiffer(cfg, plan, old, new)
        chunks, on, nn = entity_chunks(cfg, plan, old, new)
        say(f"diff {name}: {plan.key_type.data_type} keys {describe_range(chunks)}, "
            f"{on} old / {nn} new rows with a key, {len(chunks)} chunks, {c.parallelism} workers")
        total = _Acc()
        lock = threading.Lock()
        done = 0
        step = max(1, len(chunks) // 10)
        with ThreadPoolExecutor(max_workers=c.parallelism, thread_name_prefix=f"diff-{name}") as pool:
            futures = [pool.submit(differ.compare_chunk, ch.lo, ch.hi, None if ch.cuts is None else list(ch.cuts))
                       for ch in work_order(chunks)]
            for fut in as_completed(futures):
                part = fut.result()
                with lock:
                    total.merge(part, c.max_stored_keys)
                    done += 1
                    if done % step == 0 or done == len(chunks):
                        say(f"diff {name}: {done}/{len(chunks)} chunks, {total.differing_chunks} differing, "
                            f"{sum(total.counts.values())} differing rows so far")
        found_before = sum(total.counts[k] for k in ROW_KINDS)
        cleared = differ.recheck(total) if found_before else 0
        if cleared:
            say(f"diff {name}: {cleared} difference(s) cleared on re-check (in-flight writes)")
        if differ.settled_by_version or differ.waited_keys:
            say(f"diff {name}: re-check: {differ.settled_by_version} young difference(s) final at once (rows older "
                f"than recheck_delay by their version column), {differ.waited_keys} waited {differ.waited:.2f} s")

        # In-scope new rows that carry no legacy id can never match an old row.
        with new.get().cursor() as cur:
            sqlfiles.run(cur, "consistency/new_unlinked.sql", plan.new_table_identifiers(),
                         {**differ._new_params, "page_size": c.max_stored_keys})
            unlinked = cur.fetchall()
        if unlinked:
            total.counts["unlinked_in_new"] = int(unlinked[0][0])
            total.findings += [Finding("unlinked_in_new", r[1], (), {"new_key": r[1]}) for r in unlinked]
            total.new_count += int(unlinked[0][0])

    counts = {k: int(total.counts.get(k, 0)) for k in (*ROW_KINDS, "unlinked_in_new")}
    failed = any(counts.values())
    details = {"chunks": len(chunks), "differing_chunks": total.differing_chunks, "leaf_ranges": total.leaves,
               "rows_compared": total.rows_compared, "queries": total.queries, "rechecked_cleared": cleared,
               "recheck_wait_s": round(differ.waited, 3), "recheck_settled_by_version": differ.settled_by_version,
               "recheck_waited_keys": differ.waited_keys,
               "columns": list(plan.columns), "notes": list(plan.notes)}
    message = (f"{name}: {total.old_count} old / {total.new_count} new in scope; "
               + ", ".join(f"{k}={v}" for k, v in counts.items()))
    typed = [replace(f, key_type=plan.key_type.udt) if f.kind in ROW_KINDS else f for f in total.findings]
    return CheckResult(name, "entity", "failed" if failed else "passed", counts=counts,
                       findings=cap_findings(typed, c.max_stored_keys),
                       old_count=total.old_count, new_count=total.new_count, message=message,
                       duration_s=time.monotonic() - started, details=details)
