"""The task chain the three consistency DAGs share (call inside a ``@dag`` function).

    start_run -> plan_checks -> run_check[check...] -> (run_suites) -> finish_run -> (escalate) -> verdict

``run_check`` is dynamically mapped: one task instance per entity diff, cross-database reference
and count parity, named after the check in the UI; each works its key-range chunks on a thread
pool (see ``consistency.diff``). Everything after the checks runs even when a check task crashed
(``all_done``) so the run is always closed, reported and - in the hourly run - escalated; the
final ``verdict`` fails the DAG run when the consistency run did not pass.
"""

from __future__ import annotations


def _context_ids() -> tuple[str | None, str | None]:
    from airflow.sdk import get_current_context

    ctx = get_current_context()
    ti = ctx.get("ti")
    return getattr(ti, "dag_id", None), ctx.get("run_id") or getattr(ti, "run_id", None)


def consistency_chain(kind: str, *, escalate: bool = False):
    """Wire the chain; ``kind``: "diff" (phase 3) or "full" (diff + GX suites). Returns the verdict task."""
    from airflow.sdk import get_current_context, task

    from migration_engine.airflow.dags import config

    if kind not in ("diff", "full"):
        raise ValueError(f"kind must be 'diff' or 'full', got {kind!r}")

    @task
    def start_run() -> int:
        from migration_engine.consistency import tasks

        dag_id, run_id = _context_ids()
        return tasks.start_run(config(), kind=kind, dag_id=dag_id, run_id=run_id)

    @task
    def plan_checks() -> list[dict]:
        from migration_engine.consistency import tasks

        checks = tasks.plan_checks(config())
        print("checks:", ", ".join(f"{c['kind']}:{c['name']}" for c in checks))
        return checks

    @task(map_index_template="{{ check_name }}")
    def run_check(run_pk: int, check: dict) -> dict:
        from migration_engine.consistency import tasks

        get_current_context()["check_name"] = f"{check['kind']}:{check['name']}"
        return tasks.run_check(config(), run_pk, check)

    @task(trigger_rule="all_done")
    def run_suites(run_pk: int | None) -> dict | None:
        from migration_engine.consistency import tasks

        if run_pk is None:
            print("no consistency run (start_run failed); no suites")
            return None
        _dag_id, run_id = _context_ids()
        return tasks.run_suites(config(), run_pk, run_name=str(run_id or f"run-{run_pk}"))

    @task(trigger_rule="all_done")
    def finish_run(run_pk: int | None) -> dict:
        from migration_engine.consistency import tasks

        return tasks.finish_run(config(), run_pk, kind=kind)

    @task(trigger_rule="all_done")
    def escalate_task(summary: dict | None) -> dict:
        from migration_engine import db
        from migration_engine.consistency import alerting

        cfg = config()
        dag_id, run_id = _context_ids()
        try:
            conn = db.connect(cfg.connections.legacy, application_name="zdm-consistency-alerts")
        except Exception as exc:  # noqa: BLE001 - page anyway, without deduplication
            print(f"control database unreachable ({exc}); alerting without deduplication")
            conn = None
        try:
            return alerting.escalate(cfg, summary, conn=conn, dag_id=dag_id, run_id=run_id)
        finally:
            if conn is not None:
                conn.close()

    @task(trigger_rule="all_done")
    def verdict(summary: dict | None) -> dict:
        from migration_engine.consistency import tasks

        return tasks.verdict(config(), summary)

    run = start_run()
    checks = plan_checks()
    run >> checks
    results = run_check.partial(run_pk=run).expand(check=checks)
    if kind == "full":
        suites = run_suites(run)
        results >> suites
        summary = finish_run(run)
        suites >> summary
    else:
        summary = finish_run(run)
        results >> summary
    if escalate:
        sent = escalate_task.override(task_id="escalate")(summary)
        done = verdict(summary)
        sent >> done
        return done
    return verdict(summary)
