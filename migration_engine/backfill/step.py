"""One entity's historical backfill as a step: plan / apply / verify, like every other change.

The shape is GitLab's batched background migrations: the step does not copy rows itself, it
creates (or resumes) a *pass* whose run state - ranges, checkpoints, throttling, pauses - lives in
the backfill control tables (``backfill_runs`` / ``backfill_ranges``); the work items (one range
each, Airflow's mapped ``backfill_range`` tasks or the CLI's workers) copy batch by batch and
resume from their checkpoint after a crash or a SIGKILL.

* ``apply`` - validate the mapping, then record the pass: resume the open one (its ranges and
  high-water marks kept) or cut new key ranges; one transaction with its ledger entry. Idempotent in
  the sense that matters: re-applying while a pass is open resumes it, never starts a second one.
* ``plan`` - the same reads, and what apply would record: the key ranges and the exact statements
  of one batch (``COPY`` out, stage, ``INSERT ... ON CONFLICT``). A dry run copies nothing.
* ``problems`` (verify, after the pass is closed) - no open pass, and the range-checksum diff of
  ``consistency.diff``: every in-scope old row has exactly one equal new row (counts and per-row
  checksums over every mapped column; in-flight dual-writes are re-checked before they count).
* ``revert`` - none, on purpose: from the first minute of phase 2 the application dual-writes the
  new table, so a copied row cannot be told apart from a dual-written (or since updated) one, and
  deleting "the pass's rows" would delete live data. The new table is not read before phase 4;
  rolling phase 2 back is rollback scenario 1 (dual-write off), and a later pass repairs every row
  (newer version wins).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from typing import Any

from migration_engine.backfill import store
from migration_engine.backfill.plan import Plan, propose, record
from migration_engine.backfill.plan import preview as preview_plan
from migration_engine.config import Backfill, MigrationConfig
from migration_engine.ddl import DdlExecutor
from migration_engine.steps import RevertRefused, Step

PHASE = "phase2"


def _lo(key) -> str:
    """A lower bound / checkpoint for people: None is the open start of a non-integer key's first range."""
    return "start" if key is None else str(key)


def describe(plan: Plan, schema: str, s: Backfill) -> str:
    """What recording the pass means, with the key ranges and one batch's exact SQL (a plan entry)."""
    if plan.resumed:
        left = [j for j in plan.jobs if j.status != "done"]
        head = (f"-- backfill {plan.entity}: resume pass {plan.run_id} ({len(plan.jobs) - len(left)} of "
                f"{len(plan.jobs)} ranges done), each range from its checkpoint:")
        ranges = [f"--   #{j.range_no} ({_lo(j.key_lo)}, {j.key_hi}] at key {_lo(j.last_key)}, "
                  f"~{j.rows_total:,} rows" for j in left]
        writes = f"-- records: {schema}.backfill_runs (touch) + audit ledger entry backfill_resumed"
    else:
        head = (f"-- backfill {plan.entity}: new pass, {plan.rows_total:,} in-scope rows, keys "
                f"{plan.key_min}..{plan.key_max} in {len(plan.jobs)} range(s) (key_lo, key_hi]:")
        ranges = [f"--   #{j.range_no} ({_lo(j.key_lo)}, {j.key_hi}] ~{j.rows_total:,} rows" for j in plan.jobs]
        writes = (f"-- records: {schema}.backfill_runs + {schema}.backfill_ranges (one transaction) + audit ledger "
                  "entry backfill_planned")
    batch = (f"-- then each range is copied by a backfill_range task in batches of {s.initial_batch_size():,} rows "
             f"(adaptive {s.min_batch_size:,}..{s.max_batch_size:,}, "
             + (f"at most {s.max_rows_per_second:,} rows/s" if s.max_rows_per_second else "no rows/s cap")
             + "), one checkpoint per batch; one batch:")
    sql_text = [f"-- {k}\n{v.rstrip().rstrip(';')};" for k, v in plan.sql.items()]
    return "\n".join([head, *ranges, writes, batch, *sql_text])


class BackfillPass(Step):
    def __init__(self, cfg: MigrationConfig, entity: str, settings: Backfill, *, connect_legacy: Callable[[], Any],
                 connect_new: Callable[[], Any], restart: bool = False, dag_id: str | None = None,
                 dag_run_id: str | None = None) -> None:
        self.cfg, self.entity, self.settings = cfg, entity, settings
        self.connect_legacy, self.connect_new = connect_legacy, connect_new
        self.restart, self.dag_id, self.dag_run_id = restart, dag_id, dag_run_id
        self.phase = PHASE
        self.step_id = f"{PHASE}.backfill.{entity}"
        e = cfg.entities[entity] if entity in cfg.entities else None
        self.title = f"backfill {entity}" + (f" ({e.old_table} -> {e.new_table})" if e else "")
        self.plan: Plan | None = None  # after apply/plan: the pass and its jobs (the mapped work items)

    def before_state(self, ex: DdlExecutor) -> dict[str, Any]:
        run = store.peek_open_run(ex.conn, self.cfg.control_schema, self.entity)
        return {"open_pass": run.id if run else None}

    def apply(self, ex: DdlExecutor) -> list[str]:
        s, schema = self.settings, self.cfg.control_schema
        with closing(self.connect_new()) as new:
            proposal = propose(ex.conn, new, self.cfg, self.entity, s, restart=self.restart)
            shown = preview_plan(ex.conn, new, proposal, s)
        self.plan = shown
        recorded = ex.action(describe(shown, schema, s), lambda: record(
            ex.conn, self.cfg, proposal, s, dag_id=self.dag_id, dag_run_id=self.dag_run_id, actor=ex.actor))
        if recorded is not None:
            self.plan = recorded
        plan = self.plan
        left = sum(1 for j in plan.jobs if j.status != "done")
        verb = "resume pass" if plan.resumed else "new pass"
        return [f"{self.entity}: {verb} {plan.run_id or ''}".rstrip() + f", {left} of {len(plan.jobs)} range(s) to "
                f"copy, {plan.rows_total:,} in-scope rows", *plan.warnings]

    def problems(self, ex: DdlExecutor) -> list[str]:
        from migration_engine.consistency.diff import diff_entity

        open_run = store.peek_open_run(ex.conn, self.cfg.control_schema, self.entity)
        if open_run is not None:
            return [f"backfill pass {open_run.id} of {self.entity} is still running: finish (or resume) it first"]
        result = diff_entity(self.cfg, self.entity, self.connect_legacy, self.connect_new)
        if result.passed:
            return []
        sample = result.sample(5)
        return [result.message, *(f"{kind}: {', '.join(keys)}" for kind, keys in sample.items())]

    def revert(self, ex: DdlExecutor, before: dict[str, Any]) -> list[str]:
        raise RevertRefused(
            f"{self.step_id}: a backfill has no automatic revert - the application dual-writes the new table, so "
            "copied rows cannot be told apart from live ones; roll phase 2 back with migration_rollback_dual_write "
            "(the new table is not read before phase 4) and let a later pass repair the rows")
