"""The consistency run as Airflow tasks (phases 3 and 4 and the hourly run), and phase 4's flag step.

    start_run -> plan_checks -> run_check[check...] -> (run_suites) -> finish_run -> (escalate) -> verdict

One run is one step (``migration_engine.consistency.step.ConsistencyRun``). ``run_check`` is its
fan-out: dynamically mapped, one task instance per entity diff, cross-database reference and count
parity, named after the check in the UI (each works its key-range chunks on a thread pool).
``finish_run`` runs the step through ``run_steps`` (state in ``step_state``, a ledger entry): it runs
whatever the fan-out left undone and closes the run. ``verdict`` verifies the step (a
``VerificationError`` naming every failed check with its keys fails the DAG run). Everything after
the checks runs even when a check task crashed (``all_done``), so the run is always closed,
reported and - in the hourly run - escalated.

With the ``dry_run`` Param every task logs what it would send and nothing is written (no run row,
no result, no Slack message); ``finish_run`` logs the whole plan.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from airflow.sdk import get_current_context, task

from migration_engine.airflow.context import dry_run, params, task_context
from migration_engine.airflow.dags import config, failure_callback
from migration_engine.airflow.tasks import outcome, run_steps
from migration_engine.errors import MigrationError, VerificationError

log = logging.getLogger(__name__)

# Tasks of migration_consistency_hourly whose failures the escalate task reports (deduplicated).
ESCALATED_TASKS = frozenset({"start_run", "plan_checks", "run_check", "run_suites", "finish_run", "verdict"})


def _step(kind: str, phase: str):
    from migration_engine.consistency.step import ConsistencyRun

    return ConsistencyRun(config(), kind, phase=phase)


@contextmanager
def _executor() -> Iterator[Any]:
    """A step executor on the control database for the running task (planning in a dry run)."""
    from migration_engine import db
    from migration_engine.consistency.sessions import APPLICATION_NAME
    from migration_engine.ddl import DdlExecutor

    cfg = config()
    actor, ctx = task_context()
    with outcome(), db.connection(cfg.connections.legacy, application_name=APPLICATION_NAME) as conn:
        ex = DdlExecutor(conn, cfg.ddl, planning=dry_run())
        ex.actor, ex.context = actor, ctx
        yield ex
        if ex.planning:
            log.info("DRY RUN, nothing sent:\n%s", "\n".join(ex.recorded) or "(nothing)")


# --- task bodies (one call each) ---------------------------------------------------------------
def start_run(kind: str, phase: str) -> int | None:
    """The preflight of what the run compares (entities, references, value checks, count parity: a
    missing column is one config error naming its path, not a failed check per chunk), then the run."""
    from migration_engine import preflight

    with _executor() as ex:
        preflight.run_preflight(config(), parts=preflight.CONSISTENCY_PARTS)
        return _step(kind, phase).start(ex)


def plan_checks() -> list[dict[str, str]]:
    from migration_engine.consistency import runs

    checks = runs.plan_checks(config())
    log.info("checks: %s", ", ".join(f"{c['kind']}:{c['name']}" for c in checks))
    return checks


def run_check(kind: str, phase: str, run_pk: int | None, check: dict[str, str]) -> dict[str, Any]:
    get_current_context()["check_name"] = f"{check['kind']}:{check['name']}"  # map_index_template
    with _executor() as ex:
        if run_pk is None and not ex.planning:
            raise MigrationError("no consistency run to record this check in: start_run failed (see its log)")
        return _step(kind, phase).check(ex, run_pk, check) or {"dry_run": True, "check": check}


def run_suites(kind: str, phase: str, run_pk: int | None) -> dict[str, Any] | None:
    with _executor() as ex:
        if run_pk is None and not ex.planning:
            log.error("no consistency run (start_run failed); no suites")
            return None
        return _step(kind, phase).suites(ex, run_pk, run_name=str(ex.context["run_id"] or f"run-{run_pk}")) \
            or {"dry_run": True}


def finish_run(kind: str, phase: str) -> dict[str, Any]:
    """The run step, applied (or planned): whatever the fan-out left undone, then the verdict stored."""
    return run_steps(lambda cfg: [_step(kind, phase)], verify=False)


def escalate(kind: str) -> dict[str, Any]:
    """Hourly: page / update while failing, resolve when passing (dedup state in the alerts table)."""
    from migration_engine.consistency import alerting

    _actor, ctx = task_context()
    if dry_run():
        log.info("DRY RUN: no Slack message (key %s)", alerting.dedup_key(config()))
        return {"dry_run": True}
    return alerting.escalate_run(config(), kind=kind, dag_id=ctx["dag_id"], run_id=ctx["run_id"])


def verdict(kind: str, phase: str) -> dict[str, Any]:
    """Verify the run step: fails (VerificationError with every failed check and its keys) unless it passed."""
    if dry_run():
        log.info("DRY RUN: no consistency run to verify")
        return {"dry_run": True}
    run_steps(lambda cfg: [_step(kind, phase)], dry=False)
    with _executor() as ex:
        run = _step(kind, phase).current(ex)
    log.info("consistency run %s passed: all %s checks", run.id, run.summary.get("checked"))
    return {"run_pk": run.id, "status": run.status, "checks": run.summary.get("checks", [])}


def enable_shadow_reads() -> dict[str, Any]:
    """Phase 4: the ``shadow_read_pct`` flag from the Param of the same name, as a flag step."""
    from migration_engine.consistency.runs import shadow_reads_step

    pct = int(params()["shadow_read_pct"])
    return run_steps(lambda cfg: [shadow_reads_step(cfg, pct)])


def record_validation(gate_result: dict | None, verdict_result: dict | None) -> dict[str, Any]:
    from migration_engine.consistency.runs import record_validation as record

    with _executor() as ex:
        return record(ex, config(), gate_result, verdict_result)


# --- the repair (migration_phase3_repair) ------------------------------------------------------
REPAIR_APPROVAL_TASK = "approve_deletes"


def _repair_run_pk() -> int:
    """The ``consistency_run`` Param, else the last finished consistency run (phase 3 or a full run)."""
    from migration_engine import repair

    pk = params().get("consistency_run")
    if pk is not None:
        return int(pk)
    with _executor() as ex:
        run = repair.latest_run(ex.conn, config())
    if run is None:
        raise repair.RepairError("no finished consistency run to repair: run migration_phase3_data_migration first")
    return run.id


def repair_plan() -> dict[str, Any]:
    """Dry run: the keys per action and the exact SQL of every batch, changing nothing."""
    from migration_engine.repair import RepairRun

    pk = _repair_run_pk()
    return run_steps(lambda cfg: [RepairRun(cfg, pk)], dry=True)


def repair_assess() -> dict[str, Any]:
    """What the repair would do now (read-only): keys per action, deletes, whether it needs the approval."""
    from migration_engine.repair import RepairRun

    pk = _repair_run_pk()
    with _executor() as ex:
        summary = RepairRun(config(), pk).summary(ex)
    log.info("repair of consistency run %s: %s", pk, summary)
    return summary


def repair_route(summary: dict[str, Any]) -> str:
    """Branch: the approval when the repair would delete more than ``consistency.repair_max_deletes``."""
    return REPAIR_APPROVAL_TASK if summary["needs_approval"] else "repair"


def repair_apply(summary: dict[str, Any]) -> dict[str, Any]:
    """The repair step, applied and verified (the re-diff of exactly those keys). An approved request
    allows the number of deletes it showed; the step refuses more."""
    from migration_engine.airflow.approvals import APPROVE
    from migration_engine.repair import RepairRun

    answer = get_current_context()["ti"].xcom_pull(task_ids=REPAIR_APPROVAL_TASK)
    approved = summary["deletes"] if answer and APPROVE in (answer.get("chosen_options") or []) else None
    pk = int(summary["run_pk"])
    return run_steps(lambda cfg: [RepairRun(cfg, pk, approved_deletes=approved)])


def hourly_failure_callback(context) -> None:
    """Skip the generic page for failures that ``escalate`` reports (deduplicated); never raises."""
    try:
        ti = context.get("ti") or context.get("task_instance")
        task_id = getattr(ti, "task_id", None) or getattr(context.get("task"), "task_id", None)
        if isinstance(context.get("exception"), VerificationError) or task_id in ESCALATED_TASKS:
            log.info("failure of %s is reported by the escalate task (deduplicated); no separate page", task_id)
            return
    except Exception as err:  # noqa: BLE001 - fall through to the normal callback
        log.warning("hourly_failure_callback could not inspect the context: %s", err)
    failure_callback(context)


# --- the chain ---------------------------------------------------------------------------------
def consistency_chain(kind: str, *, phase: str, escalate_failures: bool = False):
    """Wire the chain inside a ``@dag`` function; ``kind``: "diff" (phase 3) or "full" (diff + GX
    suites). Returns the verdict task's output."""
    from migration_engine.consistency.step import RUN_KINDS

    if kind not in RUN_KINDS:
        raise ValueError(f"kind must be one of {RUN_KINDS}, got {kind!r}")

    @task(task_id="start_run")
    def start_run_task() -> int | None:
        return start_run(kind, phase)

    @task(task_id="plan_checks")
    def plan_checks_task() -> list[dict]:
        return plan_checks()

    @task(task_id="run_check", map_index_template="{{ check_name }}")
    def run_check_task(run_pk: int | None, check: dict) -> dict:
        return run_check(kind, phase, run_pk, check)

    @task(task_id="run_suites", trigger_rule="all_done")
    def run_suites_task(run_pk: int | None) -> dict | None:
        return run_suites(kind, phase, run_pk)

    @task(task_id="finish_run", trigger_rule="all_done")
    def finish_run_task() -> dict:
        return finish_run(kind, phase)

    @task(task_id="escalate", trigger_rule="all_done")
    def escalate_task() -> dict:
        return escalate(kind)

    @task(task_id="verdict", trigger_rule="all_done")
    def verdict_task() -> dict:
        return verdict(kind, phase)

    run = start_run_task()
    checks = plan_checks_task()
    run >> checks
    done = run_check_task.partial(run_pk=run).expand(check=checks)
    if kind == "full":
        suites = run_suites_task(run)
        done >> suites
        done = suites
    last = finish_run_task()
    done >> last
    if escalate_failures:
        sent = escalate_task()
        last >> sent
        last = sent
    result = verdict_task()
    last >> result
    return result
