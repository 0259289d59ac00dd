"""The exact SQL one check sends, for the run step's plan (dry run) and its record in ``step_state``.

Reads only: the same catalog preflight and key-bound queries the check itself starts with, on
read-only sessions (``sessions.configure_session``), so the plan's chunks are the ones the check
will work. Every chunk's checksum query is listed as it will be sent to each database; what follows
depends on the data (which sub-ranges differ), so the plan shows the first chunk's row query as an
example of the shape and says when it is used. A check whose preflight fails is listed with the
error it will be recorded with.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from migration_engine import sqlfiles
from migration_engine.config import MigrationConfig
from migration_engine.consistency import keys
from migration_engine.consistency.diff import EntityDiffer, entity_chunks
from migration_engine.consistency.plan import build_entity_plan, require_columns
from migration_engine.consistency.plan import render as render_composed
from migration_engine.consistency.references import count_query, find_reference, reference_chunks
from migration_engine.consistency.results import ConsistencyError
from migration_engine.consistency.sessions import SessionPool

Connectors = dict[str, Callable[[], Any]]


def _secs(td) -> str:
    return f"{td.total_seconds():g}s"


def _on(db: str, text: str) -> str:
    return f"-- on the {db} database:\n{text}"


def _render(pool: SessionPool, name: str, ids: dict, params: dict | None = None) -> str:
    with pool.get().cursor() as cur:
        text = sqlfiles.render(cur, name, ids, params)
    return "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("--")).strip()


def _entity(cfg: MigrationConfig, name: str, connect: Connectors) -> list[str]:
    c = cfg.consistency
    with SessionPool(connect["legacy"], c.statement_timeout, label="legacy") as old, \
            SessionPool(connect["new"], c.statement_timeout, label="new") as new:
        plan = build_entity_plan(cfg, name, old.get(), new.get())
        chunks, on, nn = entity_chunks(cfg, plan, old, new)
        differ = EntityDiffer(cfg, plan, old, new)
        out = [f"-- entity {name}: {on} legacy / {nn} new rows with a key, {len(chunks)} chunk(s), "
               f"{c.parallelism} worker(s); per chunk one checksum query per database"]
        for ch in chunks:
            cuts = list(ch.cuts) if ch.cuts is not None else differ._split(ch.lo, ch.hi, (0, 0), None, top=True) or []
            params = {"lo": ch.lo, "hi": ch.hi, "boundaries": keys.array_literal(cuts)}
            with old.get().cursor() as cur:
                out.append(_on("legacy", render_composed(cur, "consistency/old_buckets.sql", differ._old_ids,
                                                         {**differ._old_params, **params})))
            with new.get().cursor() as cur:
                out.append(_on("new", render_composed(cur, "consistency/new_buckets.sql", differ._new_ids,
                                                      {**differ._new_params, **params})))
        if chunks:
            rows = {"lo": chunks[0].lo, "hi": chunks[0].hi, "after": None, "upto": None, "keys": None,
                    "page_size": differ.page_size}
            out.append(f"-- only where a sub-range's count or checksum differs: the same queries on narrower "
                       f"sub-ranges down to {c.bisect_min_rows} rows, then that range's rows, a page at a time "
                       f"(shown for the first chunk); differing keys are read again after {_secs(c.recheck_delay)}"
                       + (f" unless their rows' {plan.version_columns[1]} dates them older than that"
                          if plan.version_columns else ""))
            with old.get().cursor() as cur:
                out.append(_on("legacy", render_composed(cur, "consistency/old_rows.sql", differ._old_ids,
                                                         {**differ._old_params, **rows})))
            with new.get().cursor() as cur:
                out.append(_on("new", render_composed(cur, "consistency/new_rows.sql", differ._new_ids,
                                                      {**differ._new_params, **rows})))
        out.append(_on("new", _render(new, "consistency/new_unlinked.sql", plan.new_table_identifiers(),
                                      {**differ._new_params, "page_size": c.max_stored_keys})))
    return out


def _reference(cfg: MigrationConfig, name: str, connect: Connectors) -> list[str]:
    c = cfg.consistency
    ref = find_reference(cfg, name)
    src, dst = ref.from_, ref.to
    with SessionPool(connect[src.db], c.statement_timeout, label=src.db) as from_pool, \
            SessionPool(connect[dst.db], c.statement_timeout, label=dst.db) as to_pool:
        rp = reference_chunks(cfg, ref, from_pool, to_pool)
        from_ids, to_ids, chunks, rows = rp.from_ids, rp.to_ids, rp.chunks, rp.rows
        out = [f"-- reference {name}: {rows} rows of {src.table} ({src.db}) in {len(chunks)} chunk(s) -> "
               f"{dst.table}.{dst.column} ({dst.db}); per chunk its references, then which of them are missing"]
        for ch in chunks:
            text = _render(from_pool, "consistency/ref_from_chunk.sql", from_ids, {"lo": ch.lo, "hi": ch.hi})
            out.append(_on(src.db, text))
        with to_pool.get().cursor() as cur:
            existing = sqlfiles.load("consistency/ref_existing.sql").compose(**to_ids).as_string(cur)
        existing = "\n".join(ln for ln in existing.splitlines() if not ln.lstrip().startswith("--")).strip()
        out.append(_on(dst.db, existing.replace("%(vals)s", "@vals") + "\n-- @vals: the chunk's distinct references "
                   "(the ones not returned are orphans); "
                   f"orphans found are looked up again after {_secs(c.recheck_delay)}"))
    return out


def _count(cfg: MigrationConfig, name: str, connect: Connectors) -> list[str]:
    c = cfg.consistency
    cp = next((p for p in c.count_parity if p.name == name), None)
    if cp is None:
        raise ConsistencyError(f"unknown count_parity {name!r}; the config has {[p.name for p in c.count_parity]}")
    out = [f"-- count parity {name}: one count per database "
           f"(counted again after {_secs(c.recheck_delay)} if they differ)"]
    for side, spec in (("legacy", cp.legacy), ("new", cp.new)):
        with SessionPool(connect[side], c.statement_timeout, label=side) as pool:
            require_columns(pool.get(), cfg, side, spec.table, [spec.where.column] if spec.where else [])
            out.append(_on(side, _render(pool, *count_query(spec))))
    return out


_PLANNERS = {"entity": _entity, "reference": _reference, "count": _count}


def check_sql(cfg: MigrationConfig, check: dict[str, str], connect: Connectors) -> list[str]:
    """The statements of one check (``{"kind", "name"}`` from ``runs.plan_checks``), in order."""
    kind, name = check["kind"], check["name"]
    if kind not in _PLANNERS:
        raise ValueError(f"unknown check kind {kind!r} in {check}")
    try:
        return _PLANNERS[kind](cfg, name, connect)
    except ConsistencyError as exc:
        return [f"-- {kind} {name} cannot run and will be recorded as an error: {exc}"]
