"""A consistency run as a step (``steps.Step``, run by ``StepRunner``): plan / apply / verify, no revert.

* **plan** - ``apply`` on a planning executor: the run row it would insert, every check with the
  exact SQL it sends to each database (``explain.check_sql``: chunk checksum queries, row queries),
  the GX suites with their assets, and the closing UPDATE. Reads only: no run row, no result, no
  finding, no consistency table is created, GX does not run.
* **apply** - continues *this DAG run's* consistency run (found by dag/run id in
  ``consistency_runs``) or starts one, runs every planned check that has no stored result yet (the
  DAG's mapped ``run_check`` tasks usually ran them all already: they are the fan-out of this one
  run), the suites of a ``full`` run, then closes the run with its verdict. Idempotent: a finished
  run sends nothing. Run state stays where it always was: ``consistency_runs`` /
  ``consistency_check_results`` / ``consistency_findings``.
* **verify** - the run passed; otherwise one ``VerificationError`` naming every failed check with
  its counts and first keys.
* **revert** - none (the default refuses): a run changes nothing but its own records.

Every write goes through ``ex.action(<exact SQL>, fn)``, so the plan and the recorded SQL of an
apply are the same text.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from migration_engine.config import MigrationConfig
from migration_engine.consistency import explain, runs, store
from migration_engine.consistency.results import CheckResult, Finding
from migration_engine.ddl import DdlExecutor
from migration_engine.errors import ConfigError
from migration_engine.steps import Step

log = logging.getLogger(__name__)

RUN_KINDS = ("diff", "full")  # diff: phase 3; full: diff + GX suites (phase 4, hourly)


class ConsistencyRun(Step):
    def __init__(self, cfg: MigrationConfig, kind: str, *, phase: str, connect: runs.Connectors | None = None,
                 urls: dict[str, str] | None = None):
        if kind not in RUN_KINDS:
            raise ConfigError(f"consistency run kind must be one of {RUN_KINDS}, got {kind!r}")
        self.cfg = cfg
        self.kind = kind
        self.phase = phase
        self.step_id = f"{phase}.consistency_run"
        self.title = f"consistency run ({'diff' if kind == 'diff' else 'diff + Great Expectations suites'})"
        self.connect = connect or runs.connectors(cfg)
        self.urls = urls  # SQLAlchemy URLs for GX; None: from the Airflow connections

    @property
    def schema(self) -> str:
        return self.cfg.control_schema

    @property
    def max_keys(self) -> int:
        return self.cfg.consistency.max_reported_keys

    # -- the run of this DAG run ------------------------------------------------------------
    def current(self, ex: DdlExecutor) -> store.ConsistencyRun | None:
        return store.run_of_dag_run(ex.conn, self.schema, dag_id=ex.context.get("dag_id"),
                                    run_id=ex.context.get("run_id"), kind=self.kind)

    def start(self, ex: DdlExecutor, *, fresh: bool = True) -> int | None:
        """This DAG run's consistency run; a new one unless one is still running (``fresh=False``:
        any run of this DAG run). Returns its id (None when planning and there is none yet)."""
        run = self.current(ex)
        if run is not None and (run.finished_at is None or not fresh):
            return run.id
        dag_id, run_id = ex.context.get("dag_id"), ex.context.get("run_id")
        statements = []
        if not store.tables_exist(ex.conn, self.schema):
            statements.append(f"-- {store.TABLES_FILE}: CREATE TABLE IF NOT EXISTS the consistency tables")
        retention = self.cfg.consistency.retention
        if retention is not None:
            statements.append(ex.render("consistency/retention_delete.sql", {"schema": self.schema},
                                        {"retention_seconds": retention.total_seconds()}))
        statements.append(ex.render("consistency/run_insert.sql", {"schema": self.schema},
                                    {"kind": self.kind, "dag_id": dag_id, "run_id": run_id}))
        return ex.action("\n".join(statements), lambda: store.start_run(
            ex.conn, self.schema, kind=self.kind, dag_id=dag_id, run_id=run_id, retention=retention))

    # -- the parts of a run (the DAG's fan-out tasks call these too) --------------------------
    def _record(self, ex: DdlExecutor, run_pk: int, result: CheckResult) -> None:
        runs.log_result(result, self.max_keys)
        with ex.transaction():
            store.record_check(ex.conn, self.schema, run_pk, result, max_keys=self.max_keys)

    def check(self, ex: DdlExecutor, run_pk: int | None, check: dict[str, str], *,
              record_errors: bool = False) -> dict[str, Any] | None:
        """Run one check and store its result (planning: record its SQL). ``record_errors``: a check
        that raises is stored as ``error`` with the exception (else the exception propagates)."""
        statements = explain.check_sql(self.cfg, check, self.connect)
        statements.append(f"-- its result and findings: consistency/check_result_upsert.sql, findings_delete.sql, "
                          f"findings_insert.sql (run {run_pk or '<new>'}, check {check['name']})")

        def go() -> dict[str, Any]:
            try:
                result = runs.execute_check(self.cfg, check, self.connect)
            except Exception as exc:
                if not record_errors:
                    raise
                result = _error_result(check["name"], check["kind"], exc)
            self._record(ex, run_pk, result)
            return result.summary(self.max_keys)

        return ex.action("\n".join(statements), go)

    def suites(self, ex: DdlExecutor, run_pk: int | None, *, run_name: str,
               record_errors: bool = False) -> dict[str, Any] | None:
        """Validate the GX suites of this run and build Data Docs (planning: list them)."""
        from migration_engine import db
        from migration_engine.consistency import suites

        with db.connection(self.cfg.new_conn_id, application_name="zdm-consistency") as new:
            specs = suites.plan_suites(self.cfg, run_pk, ex.conn, new)
        index = suites.data_docs_index(self.cfg)
        statements = [f"-- Great Expectations checkpoint(s), Data Docs in {index}"]
        for spec in specs:
            what = spec.query or str(spec.table)
            statements.append(f"-- suite {spec.name} ({spec.side} database, {spec.severity}): "
                              + (spec.error or f"{what}; expectations {[t for t, _ in spec.expectations]}"))
        statements.append("-- each suite's result: consistency/check_result_upsert.sql; "
                          "the Data Docs path: consistency/run_set_docs.sql")

        def go() -> dict[str, Any]:
            try:
                urls = self.urls or {side: runs.sqlalchemy_url(self.cfg.conn_id(side)) for side in ("legacy", "new")}
                outcome = suites.run_suites(self.cfg, specs, urls, run_name=run_name)
            except Exception as exc:
                if not record_errors:
                    raise
                for spec in specs:
                    self._record(ex, run_pk, _error_result(spec.name, "suite", exc))
                return {"error": str(exc)}
            for result in outcome.results:
                self._record(ex, run_pk, result)
            store.set_data_docs(ex.conn, self.schema, run_pk, outcome.data_docs)
            log.info("Data Docs: %s", outcome.data_docs)
            log.info("Data Docs URL: %s", outcome.data_docs_url)
            return {"data_docs": outcome.data_docs, "data_docs_url": outcome.data_docs_url,
                    "suites": {r.name: r.status for r in outcome.results}}

        return ex.action("\n".join(statements), go)

    def finish(self, ex: DdlExecutor, run_pk: int | None) -> dict[str, Any]:
        """Close the run with the verdict of its stored results (a missing result is an error)."""
        from migration_engine.consistency.suites import data_docs_index

        expected = runs.expected_checks(self.cfg, self.kind)
        rows = store.run_results(ex.conn, self.schema, run_pk) if run_pk is not None else []
        summary = runs.summarize(self.cfg, run_pk, self.kind, rows, expected)
        if self.kind == "full":
            summary["data_docs"] = str(data_docs_index(self.cfg))
        if run_pk is None:  # planning: the verdict comes from results that do not exist yet
            params = {"status": "<verdict>", "failed_checks": ["<checks that did not pass>"],
                      "summary": "<summary>", "data_docs": None, "run_pk": None}
        else:
            params = {"status": summary["status"], "failed_checks": summary["failed_checks"],
                      "summary": json.dumps(summary, default=str), "data_docs": None, "run_pk": run_pk}
        text = ex.render("consistency/run_finish.sql", {"schema": self.schema}, params)
        ex.action(text, lambda: store.finish_run(ex.conn, self.schema, run_pk, status=summary["status"],
                                                 failed_checks=summary["failed_checks"], summary=summary))
        if not ex.planning:
            log.info("consistency run %s: %s (%d checks, failed: %s, warnings: %s)", run_pk,
                     summary["status"].upper(), summary["checked"], summary["failed_checks"] or "none",
                     summary["warnings"] or "none")
        return summary

    # -- the step ----------------------------------------------------------------------------
    def before_state(self, ex: DdlExecutor) -> dict[str, Any]:
        return {}  # nothing to restore: a run only writes its own records

    def apply(self, ex: DdlExecutor) -> list[str]:
        run = self.current(ex)
        if run is not None and run.finished_at is not None:
            return [f"consistency run {run.id} of this DAG run already finished: {run.status}"]
        run_pk = run.id if run is not None else self.start(ex, fresh=False)
        done = {r["check_name"] for r in store.run_results(ex.conn, self.schema, run_pk)} if run_pk else set()
        notes = []
        for check in runs.plan_checks(self.cfg):
            if check["name"] in done:
                notes.append(f"{check['kind']} {check['name']}: result stored by its task")
                continue
            self.check(ex, run_pk, check, record_errors=True)
            notes.append(f"{check['kind']} {check['name']}: {'planned' if ex.planning else 'checked'}")
        if self.kind == "full":
            from migration_engine.consistency.suites import suite_names

            if not set(suite_names(self.cfg)) <= done:
                self.suites(ex, run_pk, run_name=str(ex.context.get("run_id") or f"run-{run_pk}"), record_errors=True)
                notes.append(f"suites: {'planned' if ex.planning else 'validated'}")
            else:
                notes.append("suites: results stored by their task")
        summary = self.finish(ex, run_pk)
        notes.append(f"consistency run {run_pk}: {'planned' if ex.planning else summary['status']}")
        return notes

    def problems(self, ex: DdlExecutor) -> list[str]:
        run = self.current(ex)
        if run is None:
            return [f"no consistency run of DAG run {ex.context.get('dag_id')} {ex.context.get('run_id')}"]
        if run.finished_at is None:
            return [f"consistency run {run.id} did not finish (see the task logs)"]
        if run.passed:
            return []
        s = run.summary or {}
        head = (f"consistency run {run.id} {run.status}: {len(run.failed_checks)} of {s.get('checked', '?')} "
                "checks did not pass")
        return [head, *runs.describe_failure(s, self.max_keys).splitlines()]


def _error_result(name: str, kind: str, exc: Exception) -> CheckResult:
    message = f"{name}: {type(exc).__name__}: {exc}"
    return CheckResult(name, kind, "error", counts={"error": 1}, message=message,
                       findings=[Finding("error", name, (), {"message": message})])
