"""Phase 5's Airflow pieces that are not operators: the pre-cutover checklist sensors.

The checklist (seed 5.1) is four deferrable gates, built from ``cutover.*`` config so the DAG file
only wires them; every evaluation lands in ``gate_results``.
"""

from __future__ import annotations

from migration_engine.airflow.dags import config

CHECKS = ["check_dual_write", "check_consistency", "check_shadow_reads", "check_backup", "check_performance"]


def checklist_sensors() -> list:
    from migration_engine.airflow.sensors import GateSensor

    cfg = config()
    co = cfg.cutover
    # alert/page_on_failure off: the checklist pages once per run, from checklist_result, with every
    # shortfall and its next step (cutover.checklist.report_checklist), not once per gate.
    common = {"poke_interval": cfg.dual_write.poke_interval.total_seconds(),
              "timeout": co.checklist_timeout.total_seconds(), "fail_on": ("critical",), "alert": False,
              "page_on_failure": False}
    return [
        GateSensor(task_id="check_dual_write", gate="dual_write_health", gate_label="cutover_dual_write",
                   gate_params={"min_success_pct": co.dual_write_min_success_pct,
                                "window": co.dual_write_window.total_seconds()}, **common),
        GateSensor(task_id="check_consistency", gate="consistency_passed_recently",
                   gate_params={"max_age": co.consistency_max_age.total_seconds()}, **common),
        GateSensor(task_id="check_shadow_reads", gate="shadow_reads", gate_label="cutover_shadow_reads",
                   gate_params={"max_mismatch_pct": co.shadow_mismatch_max_pct, "min_reads": co.shadow_min_reads,
                                "window": co.shadow_window.total_seconds()}, **common),
        GateSensor(task_id="check_backup", gate="migration_engine.cutover.checklist:pre_cutover_backup",
                   gate_params={"max_age": co.backup_max_age.total_seconds()}, **common),
        GateSensor(task_id="check_performance", gate="cutover_read_latency",
                   gate_params={"max_increase_pct": co.performance_max_p95_increase_pct,
                                "min_samples": co.performance_min_samples,
                                "window": co.performance_window.total_seconds()}, **common),
    ]


def checklist_result():
    """After every checklist gate, whatever its outcome: pass on, or one page with all shortfalls."""
    from airflow.sdk import task

    from migration_engine.airflow.tasks import on_legacy

    @task(task_id="checklist_result", trigger_rule="all_done", retries=0)
    def result() -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from migration_engine.airflow.context import dry_run
        from migration_engine.cutover.checklist import report_checklist

        if dry_run():  # the checks were skipped by the dry-run branch: nothing to report
            raise AirflowSkipException("dry run: the checklist is not evaluated")
        return on_legacy(report_checklist)

    return result()


def rollout_pcts() -> list[int]:
    return [s.pct for s in config().cutover.rollout]
