"""Cross-database referential integrity (the seed's step 3.2), and count parity.

References (``cfg.references``): every non-NULL ``from`` value must exist in ``to``, possibly in the
other database. The databases are separate, so there is no join: the referencing table is read in
primary-key chunks (``consistency.chunk_size`` rows, never the whole table), the chunk's distinct
values are sent to the referenced side as one array, and the referenced side answers which of
them do not exist (an index lookup each). Worker threads take chunks in parallel. Orphans found are
re-checked once after ``recheck_delay`` (a referenced row written a moment later by the other half
of a dual-write is not an orphan).

Count parity (``consistency.count_parity``): two counts, one per database, re-counted once after
``recheck_delay`` when they differ.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any

from migration_engine import sqlfiles
from migration_engine.config import CountSide, MigrationConfig, Reference
from migration_engine.consistency import keys
from migration_engine.consistency.diff import Chunk, _bounds, _chunks, boundary_chunks
from migration_engine.consistency.keys import KeyType
from migration_engine.consistency.plan import family, ident, require_columns, single_key, where_is
from migration_engine.consistency.results import CheckResult, ConsistencyError, Finding, cap_findings
from migration_engine.consistency.sessions import SessionPool

log = logging.getLogger(__name__)

Connectors = dict[str, Callable[[], Any]]  # "legacy" / "new" -> connection factory


def _error(name: str, kind: str, exc: Exception, started: float) -> CheckResult:
    return CheckResult(name, kind, "error", counts={"error": 1}, message=str(exc),
                       findings=[Finding("error", name, (), {"message": str(exc)})],
                       duration_s=time.monotonic() - started)


def _missing(pool: SessionPool, ids: dict, values: list, kt: KeyType) -> set:
    """The ``values`` that do not exist in the referenced column (sent as one array literal that
    takes the column's type; equality, not order, decides, so any key type works)."""
    if not values:
        return set()
    with pool.get().cursor() as cur:
        sqlfiles.run(cur, "consistency/ref_existing.sql", ids, {"vals": keys.array_literal(values)})
        found = {kt.value(r[0]) for r in cur.fetchall()}
    return set(values) - found


def find_reference(cfg: MigrationConfig, name: str) -> Reference:
    ref = next((r for r in cfg.references if r.name == name), None)
    if ref is None:
        raise ConsistencyError(f"unknown reference {name!r}; the config has {[r.name for r in cfg.references]}")
    return ref


@dataclass(frozen=True)
class RefPlan:
    from_ids: dict
    to_ids: dict
    chunks: list[Chunk]
    rows: int
    pk_type: KeyType     # the referencing table's primary key (the chunks)
    value_type: KeyType  # the referenced column (the values looked up)


def reference_chunks(cfg: MigrationConfig, ref: Reference, from_pool: SessionPool,
                     to_pool: SessionPool) -> RefPlan:
    """Preflight (columns, types, a single-column key) and the key-range chunks of the referencing
    table: integer keys by arithmetic on min/max, any other key every ``chunk_size``-th key."""
    src, dst = ref.from_, ref.to
    what = f"reference {ref.name}"
    from_cols = require_columns(from_pool.get(), cfg, src.db, src.table, [src.column])
    to_cols = require_columns(to_pool.get(), cfg, dst.db, dst.table, [dst.column])
    if family(from_cols[src.column]) != family(to_cols[dst.column]):
        raise ConsistencyError(
            f"{what}: {src.table}.{src.column} is {from_cols[src.column]} but "
            f"{dst.table}.{dst.column} is {to_cols[dst.column]}")
    pk, pk_type = single_key(from_pool.get(), cfg, src.db, src.table, what)
    value_type = keys.require_key(to_pool.get(), what, where_is(cfg, dst.db), dst.table, dst.column)
    keys.require_key(from_pool.get(), what, where_is(cfg, src.db), src.table, src.column)
    from_ids = {"table": ident(src.table), "pk": pk, "column": src.column}
    to_ids = {"table": ident(dst.table), "column": dst.column}
    lo, hi, rows = _bounds(from_pool, "consistency/key_bounds.sql", {"table": ident(src.table), "key": pk}, pk_type)
    c = cfg.consistency
    if lo is None:
        chunks: list[Chunk] = []
    elif pk_type.integer:
        chunks = _chunks(lo, hi + 1, rows, c.chunk_size)
    else:
        with from_pool.get().cursor() as cur:
            sqlfiles.run(cur, "consistency/key_boundaries.sql", {"table": ident(src.table), "key": pk,
                                                                 "scope_column": pk},
                         {"lo": None, "hi": None, "every": c.chunk_size, "scoped": False, "scope_values": []})
            cuts = [pk_type.value(r[0]) for r in cur.fetchall()]
        chunks = boundary_chunks(cuts, 1)
    return RefPlan(from_ids, to_ids, chunks, rows, pk_type, value_type)


def check_reference(cfg: MigrationConfig, name: str, connect: Connectors,
                    *, progress: Callable[[str], None] | None = None) -> CheckResult:
    started = time.monotonic()
    say = progress or log.info
    c = cfg.consistency
    try:
        ref = find_reference(cfg, name)
    except ConsistencyError as exc:
        return _error(name, "reference", exc, started)
    src, dst = ref.from_, ref.to
    target = f"{dst.table}.{dst.column} ({dst.db} database)"
    with SessionPool(connect[src.db], c.statement_timeout, label=src.db) as from_pool, \
            SessionPool(connect[dst.db], c.statement_timeout, label=dst.db) as to_pool:
        try:
            rp = reference_chunks(cfg, ref, from_pool, to_pool)
            from_ids, to_ids, chunks, rows = rp.from_ids, rp.to_ids, rp.chunks, rp.rows
        except ConsistencyError as exc:
            return _error(name, "reference", exc, started)
        say(f"reference {name}: {rows} rows of {src.table} in {len(chunks)} chunks -> {target}")
        lock = threading.Lock()
        totals = {"rows_checked": 0, "distinct_values": 0, "orphans": 0}
        findings: list[Finding] = []

        def work(lo_: int, hi_: int) -> tuple[int, int, list[tuple]]:
            with from_pool.get().cursor() as cur:
                sqlfiles.run(cur, "consistency/ref_from_chunk.sql", from_ids, {"lo": lo_, "hi": hi_})
                pairs = [(rp.pk_type.value(k), rp.value_type.value(v)) for k, v in cur.fetchall()]
            values = sorted({v for _, v in pairs})
            missing = _missing(to_pool, to_ids, values, rp.value_type)
            return len(pairs), len(values), [(k, v) for k, v in pairs if v in missing]

        with ThreadPoolExecutor(max_workers=c.parallelism, thread_name_prefix=f"ref-{name}") as pool:
            for fut in as_completed([pool.submit(work, ch.lo, ch.hi) for ch in chunks]):
                n_rows, n_vals, orphans = fut.result()
                with lock:
                    totals["rows_checked"] += n_rows
                    totals["distinct_values"] += n_vals
                    totals["orphans"] += len(orphans)
                    findings = cap_findings(findings + [
                        Finding("orphan", k, (src.column,), {"value": v, "references": target},
                                key_type=rp.pk_type.udt)
                        for k, v in orphans], c.max_stored_keys)
        cleared = 0
        if findings:
            time.sleep(c.recheck_delay.total_seconds())
            still = _missing(to_pool, to_ids, sorted({f.detail["value"] for f in findings}), rp.value_type)
            kept = [f for f in findings if f.detail["value"] in still]
            cleared = len(findings) - len(kept)
            totals["orphans"] -= cleared
            findings = kept
    status = "failed" if totals["orphans"] else "passed"
    message = (f"{name}: {totals['rows_checked']} references from {src.table}.{src.column} checked against "
               f"{target}; {totals['orphans']} orphan(s)")
    return CheckResult(name, "reference", status, counts={"orphan": totals["orphans"]}, findings=findings,
                       message=message, duration_s=time.monotonic() - started,
                       details={**totals, "chunks": len(chunks), "rechecked_cleared": cleared,
                                "from": f"{src.db}:{src.table}.{src.column}",
                                "to": f"{dst.db}:{dst.table}.{dst.column}"})


def count_query(spec: CountSide) -> tuple[str, dict, dict]:
    """(SQL file, identifiers, params) of one side's count."""
    if spec.where is None:
        return "consistency/count_all.sql", {"table": ident(spec.table)}, {}
    eq = spec.where.equals
    eq_text = None if eq is None else (str(eq).lower() if isinstance(eq, bool) else str(eq))
    return ("consistency/count_where.sql", {"table": ident(spec.table), "column": spec.where.column},
            {"is_not_null": spec.where.is_not_null, "equals_text": eq_text})


def _count(pool: SessionPool, cfg: MigrationConfig, side: str, spec: CountSide) -> int:
    conn = pool.get()
    require_columns(conn, cfg, side, spec.table, [spec.where.column] if spec.where else [])
    with conn.cursor() as cur:
        sqlfiles.run(cur, *count_query(spec))
        return int(cur.fetchone()[0])


def _describe(spec: CountSide) -> str:
    if spec.where is None:
        return str(spec.table)
    cond = "IS NOT NULL" if spec.where.is_not_null else f"= {spec.where.equals!r}"
    return f"{spec.table} WHERE {spec.where.column} {cond}"


def check_count(cfg: MigrationConfig, name: str, connect: Connectors) -> CheckResult:
    started = time.monotonic()
    c = cfg.consistency
    cp = next((p for p in c.count_parity if p.name == name), None)
    if cp is None:
        return _error(name, "count", ConsistencyError(
            f"unknown count_parity {name!r}; the config has {[p.name for p in c.count_parity]}"), started)
    with SessionPool(connect["legacy"], c.statement_timeout, label="legacy") as legacy, \
            SessionPool(connect["new"], c.statement_timeout, label="new") as new:
        try:
            old_n, new_n = _count(legacy, cfg, "legacy", cp.legacy), _count(new, cfg, "new", cp.new)
            if old_n != new_n and c.recheck_delay.total_seconds() > 0:
                time.sleep(c.recheck_delay.total_seconds())
                old_n, new_n = _count(legacy, cfg, "legacy", cp.legacy), _count(new, cfg, "new", cp.new)
        except ConsistencyError as exc:
            return _error(name, "count", exc, started)
    diff = new_n - old_n
    message = (f"{name}: legacy {_describe(cp.legacy)} = {old_n}, new {_describe(cp.new)} = {new_n}"
               + (f" (difference {diff:+d})" if diff else ""))
    return CheckResult(name, "count", "failed" if diff else "passed", counts={"difference": abs(diff)},
                       old_count=old_n, new_count=new_n, message=message, duration_s=time.monotonic() - started,
                       details={"legacy": _describe(cp.legacy), "new": _describe(cp.new)})
