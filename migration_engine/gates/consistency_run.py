"""Gate: "the last full consistency run passed, and recently" (seed 5.1 "Data consistency
validation passed"), for phase 5's pre-cutover checklist.

A full run is phase 4's or the hourly run's diff + Great Expectations suites
(``migration_engine.consistency.store.last_consistency_run``). ``waiting`` while there is none or
the latest is older than ``max_age`` (default ``cutover.consistency_max_age``); ``critical`` when
the latest run failed (its failed checks are in the reason); ``passed`` otherwise.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from migration_engine.config import MigrationConfig
from migration_engine.gates import GateResult, register
from migration_engine.gates.dual_write import duration_param
from migration_engine.gates.window import fmt_duration

GATE = "consistency_passed_recently"


@register(GATE)
def consistency_passed_recently(conn, cfg: MigrationConfig, now: datetime, **params: Any) -> GateResult:
    from migration_engine.consistency.store import last_consistency_run

    unknown = sorted(set(params) - {"max_age", "kinds"})
    if unknown:
        raise ValueError(f"{GATE}: unknown gate param(s) {unknown}; known: ['kinds', 'max_age']")
    max_age = duration_param(params.get("max_age", cfg.cutover.consistency_max_age), "max_age", cfg)
    kinds = tuple(params.get("kinds") or ("full",))
    run = last_consistency_run(conn, cfg, kinds=kinds)
    if run is None:
        return GateResult(GATE, "waiting", f"no finished consistency run ({'/'.join(kinds)}) yet; run "
                          "migration_phase4_validation or wait for migration_consistency_hourly",
                          {"max_age": fmt_duration(max_age)})
    age = now - run.finished_at
    figures = {"run": run.id, "status": run.status, "finished_at": run.finished_at.isoformat(timespec="seconds"),
               "age": fmt_duration(age), "max_age": fmt_duration(max_age), "failed_checks": run.failed_checks,
               "dag_id": run.dag_id, "run_id": run.run_id, "data_docs": run.data_docs}
    if run.status != "passed":
        return GateResult(GATE, "critical", f"the latest consistency run {run.id} ({run.dag_id}) {run.status}: "
                          f"{', '.join(run.failed_checks) or 'see its summary'}", figures)
    if age > max_age:
        return GateResult(GATE, "waiting", f"the latest consistency run {run.id} passed {fmt_duration(age)} ago, "
                          f"older than {fmt_duration(max_age)}", figures)
    return GateResult(GATE, "passed", f"consistency run {run.id} passed {fmt_duration(age)} ago "
                      f"(within {fmt_duration(max_age)})", figures)
