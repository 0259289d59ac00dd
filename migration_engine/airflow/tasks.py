"""How a task calls the engine: one connection, the task's actor, product errors mapped to outcomes.

* :class:`~migration_engine.errors.Refused` -> ``AirflowFailException``: the migration is not in a
  state where the step applies; retrying cannot help, so the task fails at once with the reason.
* any other error keeps the task's retry policy (a lost connection, a lock that stayed taken).

``run_steps`` is the one way a DAG runs steps (plan / apply / verify / revert, state in
``step_state``): with the ``dry_run`` Param it prints the plan and changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from migration_engine.airflow.context import dry_run, params, task_context
from migration_engine.airflow.dags import config
from migration_engine.config import MigrationConfig
from migration_engine.errors import Refused

log = logging.getLogger(__name__)


@contextmanager
def outcome() -> Iterator[None]:
    """Refusals fail the task without retries, with the refusal's message shown in the UI, and are
    recorded in the audit ledger (one ``refused`` entry with the reason, :func:`record_refusal`)."""
    try:
        yield
    except Refused as exc:
        record_refusal(exc)
        raise AirflowFailException(str(exc)) from exc


def record_refusal(exc: Refused) -> bool:
    """Append one ``refused`` entry (reason = the refusal's text; dag/run/task ids in the details) to the
    ledger, so the dashboard's "why did this run fail" finds it even when Slack is down and the failure
    alert never got through. A fresh connection: the task's own may be the one that failed.

    Not in a dry run (a dry run writes nothing; the refusal is in the task's log and the UI). Best
    effort: if the ledger cannot be written (no control schema yet, database down) the task still
    fails with the refusal, and the log says the entry is missing. Returns whether it was recorded."""
    from migration_engine import control, db

    try:
        if dry_run():
            return False
        cfg = config()
        actor, ctx = task_context()
        with db.connection(cfg.connections.legacy) as conn:
            control.audit(conn, cfg.control_schema, actor=actor, action="refused",
                          target=f"{ctx['dag_id']}.{ctx['task_id']}",
                          details={**ctx, "refusal": type(exc).__name__}, reason=str(exc))
        return True
    except Exception as err:  # noqa: BLE001 - recording must never hide the refusal itself
        log.warning("the refusal was not recorded in the audit ledger (%s: %s); refusal: %s",
                    type(err).__name__, err, exc)
        return False


def on_legacy(fn: Callable[..., Any], *, dry_run_aware: bool = False, param_names: Sequence[str] = ()) -> Any:
    """Run ``fn(conn, cfg, actor=, context=)`` on the legacy DB (the control schema's) as the current task.

    ``dry_run_aware``: ``fn`` also gets the run's ``dry_run`` Param (it must then change nothing);
    ``param_names``: these Params of the trigger form are passed as keyword arguments.
    """
    from migration_engine import db

    cfg = config()
    actor, ctx = task_context()
    extra: dict[str, Any] = {"dry_run": dry_run()} if dry_run_aware else {}
    values = params() if param_names else {}
    extra.update({name: values.get(name) for name in param_names})
    with outcome(), db.connection(cfg.connections.legacy) as conn:
        return fn(conn, cfg, actor=actor, context=ctx, **extra)


def run_steps(build: Callable[[MigrationConfig], Sequence[Any]], *, action: str = "apply", verify: bool = True,
              dry: bool | None = None) -> dict[str, Any]:
    """Plan (dry run), apply (+ verify) or revert the steps ``build(cfg)`` returns, on the legacy DB.

    Returns ``{"dry_run", "action", "steps": [StepResult.as_dict()]}``; a dry run logs every statement.
    """
    from migration_engine import db
    from migration_engine.steps import StepRunner

    cfg = config()
    actor, ctx = task_context()
    dry = dry_run() if dry is None else dry
    with outcome(), db.connection(cfg.connections.legacy) as conn:
        steps = list(build(cfg))
        runner = StepRunner(conn, schema=cfg.control_schema, ddl=cfg.ddl, actor=actor, context=ctx)
        if dry:
            results = runner.plan(steps) if action == "apply" else runner.revert_plan(steps)
            for r in results:
                log.info("DRY RUN %s %s:\n%s", action, r.step_id, "\n".join(r.executed) or "(nothing to do)")
        elif action == "apply":
            results = runner.apply(steps)
            if verify:
                runner.verify(steps)
        elif action == "revert":
            results = runner.revert(steps)
        else:
            raise ValueError(f"unknown step action {action!r}")
    return {"dry_run": dry, "action": action, "steps": [r.as_dict() for r in results]}


def one_shot_gate(evaluate: Callable[..., Any], refused: str) -> dict:
    """Evaluate ``evaluate(conn, cfg, now) -> GateResult`` once on the legacy DB, record it in
    gate_results, and fail the task (no retries) with ``"<refused>: <reason>"`` unless it passed."""
    from migration_engine import control, db

    cfg = config()
    _actor, ctx = task_context()
    with db.connection(cfg.connections.legacy) as conn:
        result = evaluate(conn, cfg, datetime.now(UTC))
        conn.rollback()  # the evaluation only read; record the result in a fresh transaction
        control.record_gate_result(conn, cfg.control_schema, gate=result.gate, status=result.status,
                                   figures=result.figures, reason=result.reason, dag_id=ctx["dag_id"],
                                   run_id=ctx["run_id"])
    if not result.passed:
        raise AirflowFailException(f"{refused}: {result.reason}")
    return result.as_dict()
