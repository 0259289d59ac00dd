"""Plan a backfill pass: check the mapping against the data, split the key space into ranges.

Three parts, so the step (``backfill.step.BackfillPass``) can plan exactly what it applies:
:func:`propose` validates before anything is written (integer key, every in-scope value of a mapped
column covered by its map, lookups resolvable, the version column mapped) and finds the pass -
resume the open one, or new key ranges - by reads only; :func:`preview` adds the exact SQL of one
batch (dry run); :func:`record` writes the pass and its ranges in the control schema with its
ledger entry, in one transaction. :func:`plan_entity` is propose + preview/record.

Ranges are cut at quantiles of the in-scope keys, so each holds about the same number of rows
whatever the key distribution; they are ``(key_lo, key_hi]``, contiguous and non-overlapping,
covering ``[key_min, key_max]`` as of planning time. Rows created later carry larger keys and are
written by the application's dual-write (the flag is on before the plan runs).

An open pass of the same entity is resumed (its ranges and high-water marks kept) unless
``restart`` is asked for, which cancels it and plans afresh.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

from migration_engine import control, control_schema, keys, sqlfiles, transforms
from migration_engine.backfill import store
from migration_engine.backfill.settings import BackfillError, as_record
from migration_engine.backfill.sqlgen import EntitySql
from migration_engine.config import Backfill, MigrationConfig
from migration_engine.keys import Key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RangeJob:
    """One unit of parallel work (a mapped Airflow task, or one CLI worker)."""

    entity: str
    run_id: int | None  # None in a dry run
    range_no: int
    key_lo: Any      # key values: int for an integer key, else text; None = open first range
    key_hi: Any
    rows_total: int
    last_key: Any
    status: str = "pending"
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Plan:
    entity: str
    run_id: int | None
    resumed: bool
    key_min: Any
    key_max: Any
    rows_total: int
    jobs: list[RangeJob]
    warnings: list[str] = field(default_factory=list)
    sql: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["jobs"] = [j.as_dict() for j in self.jobs]
        return d


def split_ranges(key_min: Any, key_max: Any, quantiles: list[Any], key: Key | None = None
                 ) -> list[tuple[Any, Any]]:
    """``(lo, hi]`` ranges covering [key_min, key_max], cut at the distinct inner quantiles.

    ``quantiles`` come from the server in key order (``percentile_disc``), so the cuts are found
    without comparing keys in Python: equal neighbours collapse, and cuts at ``key_max`` are dropped.
    The first range's lower bound is ``key_min - 1`` for an integer key and open (None) otherwise.
    """
    before = key.before(key_min) if key is not None else key_min - 1
    cuts: list[Any] = []
    for q in quantiles:
        if q is None or q == key_max or (cuts and q == cuts[-1]):
            continue
        if key is None and not key_min <= q < key_max:  # integers given out of order (unit tests)
            continue
        cuts.append(q)
    if key is None:
        cuts = sorted(set(cuts))
    bounds = [before, *cuts, key_max]
    return [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


def read_key(legacy, new, es: EntitySql) -> Key:
    """The entity's key from the legacy catalog, refused unless supported and comparable with the
    new table's legacy-id column (the ghost sweep pages that by the same bounds)."""
    e = es.entity
    what = f"entity {es.name}"
    try:
        key = keys.read_key(legacy, schema=e.old_table.schema_name, table=e.old_table.table, column=e.key,
                            what=what)
        legacy.commit()
        lid = keys.read_key(new, schema=e.new_table.schema_name, table=e.new_table.table,
                            column=e.legacy_id_column, what=f"{what} (legacy_id_column)")
        new.commit()
    except keys.UnsupportedKey as exc:
        legacy.rollback()
        new.rollback()
        raise BackfillError(str(exc)) from exc
    if not keys.compatible(key, lid):
        raise BackfillError(f"{what}: the key {e.old_table}.{e.key} is {key.type_name} but the new table's "
                            f"legacy_id_column {e.new_table}.{e.legacy_id_column} is {lid.type_name}; they must "
                            "be of the same kind (integer / uuid / text) to copy and compare keys")
    if key.kind == "text" and key.collation != lid.collation:
        log.warning("%s: key %s.%s has collation %s but %s.%s has %s; the ghost sweep pages the new side by "
                    "its own collation, so a ghost where the two orders differ may be left for the consistency "
                    "diff to find", what, e.old_table, e.key, key.collation or "default", e.new_table,
                    e.legacy_id_column, lid.collation or "default")
    return key


def _check_version_column(es: EntitySql, s: Backfill) -> None:
    if s.version_column is None:
        return
    mapped = [c.new for c in es.entity.columns]
    if s.version_column not in mapped:
        raise BackfillError(
            f"entity {es.name}: backfill.version_column {s.version_column!r} is not a mapped column "
            f"(mapped: {mapped}); map it, or set backfill.version_column: null to never overwrite rows")


def _check_maps(legacy, es: EntitySql) -> None:
    problems = []
    for c in es.entity.columns:
        if c.map is None:
            continue
        with legacy.cursor() as cur:
            sqlfiles.run(cur, "backfill/unmapped_values.sql", {**es.old_ids(), "column": c.old},
                         {**es.scope_params, "mapped_values": list(c.map)})
            values = [r[0] for r in cur.fetchall()]
        if values:
            problems.append(f"column {c.old} -> {c.new}: {values} not in map {sorted(c.map)}")
    legacy.commit()
    if problems:
        raise BackfillError(f"entity {es.name}: in-scope values have no mapping in the config "
                            "(add them to the column's map):\n  " + "\n  ".join(problems))


def _check_transforms(legacy, es: EntitySql) -> None:
    """The legacy server can compute every transformed column (planned with WHERE false, nothing read)."""
    if not any(transforms.has_transform(c) for c in es.entity.columns):
        return
    try:
        transforms.probe_output_types(legacy, es.entity, path=f"entities.{es.name}")
    except transforms.TransformError as exc:
        raise BackfillError(f"entity {es.name}: {exc}") from None


def _check_fractions(legacy, es: EntitySql) -> None:
    """A ``scale`` with ``rounding: error`` refuses fractions: name the in-scope rows that have one."""
    problems = []
    for i, c in enumerate(es.entity.columns):
        if c.scale is None or c.scale.rounding != "error":
            continue
        tpl = sqlfiles.load("backfill/fractional_values.sql")
        value = transforms.forward(c.model_copy(update={"cast": None, "default": None}), "src", f"zdm_t{i}",
                                   mode="exact")
        with legacy.cursor() as cur:
            cur.execute(tpl.compose(**es.old_ids(), value=value.sql), {**es.scope_params, **value.params})
            rows = cur.fetchall()
        if rows:
            problems.append(f"column {c.old} -> {c.new} (scale by {c.scale.by}, rounding: error): "
                            + ", ".join(f"{es.entity.key} {k} gives {v}" for k, v in rows)
                            + (" (first 20)" if len(rows) == 20 else ""))
    legacy.commit()
    if problems:
        raise BackfillError(f"entity {es.name}: in-scope values do not scale to whole numbers (fix the rows or "
                            "choose a rounding):\n  " + "\n  ".join(problems))


def _check_lookups(legacy, new, es: EntitySql) -> list[str]:
    warnings = []
    for c in es.entity.columns:
        if c.lookup is None:
            continue
        with legacy.cursor() as cur:
            sqlfiles.run(cur, "backfill/distinct_values.sql", {**es.old_ids(), "column": c.old}, es.scope_params)
            values = [str(r[0]) for r in cur.fetchall()]
        legacy.commit()
        if not values:
            continue
        lk = c.lookup
        with new.cursor() as cur:
            sqlfiles.run(cur, "backfill/lookup_missing.sql",
                         {"lookup_schema": lk.table.schema_name, "lookup_table": lk.table.table, "match": lk.match},
                         {"old_values": values})
            missing = [r[0] for r in cur.fetchall()]
        new.commit()
        if missing:
            warnings.append(f"column {c.new}: no {lk.table}.{lk.match} for {c.old} values {missing}"
                            f"{' (first 20)' if len(missing) == 20 else ''}; those rows get {c.new} NULL")
    return warnings


def _bounds(legacy, es: EntitySql, parallelism: int) -> tuple[Any, Any, int, list[tuple[Any, Any, int]]]:
    """(key_min, key_max, in-scope rows, ranges) from one sort of the in-scope keys (any key type)."""
    key = es.key
    fractions = [0.0, *(i / parallelism for i in range(1, parallelism)), 1.0]
    with legacy.cursor() as cur:
        sqlfiles.run(cur, "backfill/key_bounds.sql", es.old_ids(), {**es.scope_params, "fractions": fractions})
        count, quantiles = cur.fetchone()
        if not count:
            legacy.commit()
            return None, None, 0, []
        values = [key.value(q) for q in quantiles]
        key_min, key_max = values[0], values[-1]
        pairs = split_ranges(key_min, key_max, values[1:-1], key)
        lo = pairs[0][0]
        sqlfiles.run(cur, "backfill/range_counts.sql", es.old_ids(), {
            **es.scope_params, "key_lo": None if lo is None else key.text(lo), "key_hi": key.text(pairs[-1][1]),
            "cuts": [key.text(p[1]) for p in pairs[:-1]]})
        counts = dict(cur.fetchall())
    legacy.commit()
    return key_min, key_max, int(count), [(lo, hi, int(counts.get(i + 1, 0))) for i, (lo, hi) in enumerate(pairs)]


def _strip_comments(text: str) -> str:
    return "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("--")).strip()


def render_sql(legacy, new, es: EntitySql, s: Backfill, job: RangeJob | None) -> dict[str, str]:
    """The exact statements of one batch, in execution order (what a dry run shows)."""
    out = {}
    if job is not None:
        with legacy.cursor() as cur:
            out["1 legacy: read batch"] = es.read_batch(cur, after_key=job.last_key, range_hi=job.key_hi,
                                                        limit=s.initial_batch_size())
    with new.cursor() as cur:
        out["0 new: create stage (once per session)"] = cur.mogrify(es.create_stage(), {}).decode()
        out["2 new: copy into stage"] = cur.mogrify(es.copy_into_stage(), {}).decode()
        out["3 new: write batch"] = cur.mogrify(es.write_batch(s.version_column), {}).decode()
        if s.direct_copy:
            # the direct path (a batch into an empty key range; its read resolves the lookups from a
            # map of the lookup table read when the range starts, see docs/phase2.md)
            out["2 new (direct path, empty key range): copy into target"] = cur.mogrify(
                es.copy_into_target(), {}).decode()
    new.rollback()
    legacy.rollback()
    return {k: _strip_comments(out[k]) for k in sorted(out)}


@dataclass
class Proposal:
    """What recording a pass would do now, found by reads only (the plan half of the step)."""

    entity: str
    es: EntitySql
    warnings: list[str]
    resume: store.RunRow | None = None        # the open pass that will be resumed ...
    resume_ranges: list[store.RangeRow] = field(default_factory=list)
    cancel: store.RunRow | None = None        # ... or the open pass a restart cancels
    key_min: Any = None
    key_max: Any = None
    rows_total: int = 0
    ranges: list[tuple[Any, Any, int]] = field(default_factory=list)  # (key_lo, key_hi, rows) of a new pass

    def jobs(self, *, dry_run: bool) -> list[RangeJob]:
        if self.resume is not None:
            return [RangeJob(self.entity, self.resume.id, r.range_no, r.key_lo, r.key_hi, r.rows_total, r.last_key,
                             r.status, dry_run=dry_run) for r in self.resume_ranges]
        return [RangeJob(self.entity, None, i, lo, hi, n, lo, dry_run=dry_run)
                for i, (lo, hi, n) in enumerate(self.ranges)]


def propose(legacy, new, cfg: MigrationConfig, entity_name: str, s: Backfill, *, restart: bool = False) -> Proposal:
    """Validate the mapping and find what a pass would be: resume the open one, or new key ranges."""
    if entity_name not in cfg.entities:
        raise BackfillError(f"entity {entity_name!r} is not in the migration config; known: {sorted(cfg.entities)}")
    schema = cfg.control_schema
    es = EntitySql(entity_name, cfg.entities[entity_name], schema)
    es = dataclasses.replace(es, key=read_key(legacy, new, es))
    _check_version_column(es, s)
    _check_maps(legacy, es)
    _check_transforms(legacy, es)
    _check_fractions(legacy, es)
    warnings = _check_lookups(legacy, new, es)
    for w in warnings:
        log.warning("backfill plan %s: %s", entity_name, w)
    existing = store.peek_open_run(legacy, schema, entity_name)
    legacy.commit()
    if existing is not None and not restart:
        _check_resumable(es, existing)
        rows = store.ranges(legacy, schema, existing.id)
        legacy.commit()
        return Proposal(entity_name, es, warnings, resume=existing, resume_ranges=rows, key_min=existing.key_min,
                        key_max=existing.key_max, rows_total=existing.rows_total)
    key_min, key_max, total, ranges = _bounds(legacy, es, s.parallelism)
    return Proposal(entity_name, es, warnings, cancel=existing, key_min=key_min, key_max=key_max, rows_total=total,
                    ranges=ranges)


def _check_resumable(es: EntitySql, run: store.RunRow) -> None:
    """A pass planned on another key column or type cannot continue from its checkpoints."""
    key = es.key
    if run.key_column != key.column or keys.kind_of(run.key_type) != key.kind:
        raise BackfillError(
            f"entity {es.name}: the open backfill pass {run.id} was planned on key {run.key_column} "
            f"({run.key_type}), but the key is now {key.column} ({key.type_name}); its checkpoints do not "
            "apply: re-plan with restart (the phase-2 DAG's restart_backfill Param, or zdm-backfill --restart)")


def preview(legacy, new, p: Proposal, s: Backfill) -> Plan:
    """The dry-run plan: the jobs recording would create and the exact SQL of one batch."""
    jobs = p.jobs(dry_run=True)
    first = next((j for j in jobs if j.status != "done"), None)
    sql_text = render_sql(legacy, new, p.es, s, first)
    return Plan(p.entity, p.resume.id if p.resume else None, p.resume is not None, p.key_min, p.key_max, p.rows_total,
                jobs, p.warnings, sql_text, dry_run=True)


def record(legacy, cfg: MigrationConfig, p: Proposal, s: Backfill, *, dag_id: str | None = None,
           dag_run_id: str | None = None, actor: str = "backfill") -> Plan:
    """Create (or resume) the pass in the control tables, with its ledger entry, in one transaction.

    The open pass is read again under a row lock: two planners racing resume the same pass.
    """
    schema = cfg.control_schema
    autocommit = legacy.autocommit
    if autocommit:
        legacy.autocommit = False  # transactions, also on an autocommit (step executor) connection
    try:
        control_schema.require_current(legacy, schema)  # migration_setup creates/upgrades it
        plan = _record(legacy, cfg, p, s, schema, dag_id, dag_run_id, actor)
        legacy.commit()
    except BaseException:
        legacy.rollback()
        raise
    finally:
        if autocommit:
            legacy.autocommit = True
    return plan


def _record(legacy, cfg, p: Proposal, s: Backfill, schema: str, dag_id, dag_run_id, actor) -> Plan:
    entity_name = p.entity
    existing = store.open_run(legacy, schema, entity_name)
    if existing is not None and p.cancel is None:  # resume (also if it appeared since the proposal)
        store.touch_run(legacy, schema, existing.id, dag_id, dag_run_id)
        rows = store.ranges(legacy, schema, existing.id)
        control.append_audit(legacy, schema, actor=actor, action="backfill_resumed", target=entity_name,
                             details={"backfill_run": existing.id, "ranges": len(rows),
                                      "ranges_done": sum(r.done for r in rows),
                                      "rows_read": sum(r.rows_read for r in rows)},
                             reason="an unfinished pass exists; resuming from its checkpoints")
        jobs = [RangeJob(entity_name, existing.id, r.range_no, r.key_lo, r.key_hi, r.rows_total, r.last_key,
                         r.status) for r in rows]
        log.info("backfill %s: resuming pass %s (%d of %d ranges done)", entity_name, existing.id,
                 sum(r.done for r in rows), len(rows))
        return Plan(entity_name, existing.id, True, existing.key_min, existing.key_max, existing.rows_total,
                    jobs, p.warnings)
    if existing is not None:
        store.set_run_status(legacy, schema, existing.id, "cancelled")
        control.append_audit(legacy, schema, actor=actor, action="backfill_cancelled", target=entity_name,
                             details={"backfill_run": existing.id}, reason="restart requested")
    ranges, total = p.ranges, p.rows_total
    run_id = store.insert_run(legacy, schema, entity=entity_name, key_column=p.es.entity.key,
                              key_type=p.es.key.base_type, key_min=p.key_min,
                              key_max=p.key_max, rows_total=total, parallelism=s.parallelism,
                              settings=as_record(s), dag_id=dag_id, dag_run_id=dag_run_id)
    if ranges:
        store.insert_ranges(legacy, schema, run_id, ranges)
    else:
        store.set_run_status(legacy, schema, run_id, "done")
    control.append_audit(legacy, schema, actor=actor, action="backfill_planned", target=entity_name,
                         details={"backfill_run": run_id, "rows_total": total, "key_min": p.key_min,
                                  "key_max": p.key_max, "ranges": [[lo, hi, n] for lo, hi, n in ranges],
                                  "settings": as_record(s), "warnings": p.warnings},
                         reason="historical backfill planned")
    log.info("backfill %s: planned pass %s, %d in-scope rows, keys %s..%s in %d range(s)", entity_name, run_id,
             total, p.key_min, p.key_max, len(ranges))
    jobs = [RangeJob(entity_name, run_id, i, lo, hi, n, lo) for i, (lo, hi, n) in enumerate(ranges)]
    return Plan(entity_name, run_id, False, p.key_min, p.key_max, total, jobs, p.warnings)


def plan_entity(
    legacy,
    new,
    cfg: MigrationConfig,
    entity_name: str,
    s: Backfill,
    *,
    restart: bool = False,
    dry_run: bool = False,
    dag_id: str | None = None,
    dag_run_id: str | None = None,
    actor: str = "backfill",
) -> Plan:
    """Propose, then preview (dry run: nothing written) or record the pass (CLI and engine tests)."""
    p = propose(legacy, new, cfg, entity_name, s, restart=restart)
    if dry_run:
        return preview(legacy, new, p, s)
    return record(legacy, cfg, p, s, dag_id=dag_id, dag_run_id=dag_run_id, actor=actor)
