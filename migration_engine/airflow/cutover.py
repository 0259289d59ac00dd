"""Phase 5's Airflow pieces that are not operators: the pre-cutover checklist sensors.

The checklist (seed 5.1) is four deferrable gates, built from ``cutover.*`` config so the DAG file
only wires them; every evaluation lands in ``gate_results``.
"""

from __future__ import annotations

from migration_engine.airflow.dags import config

CHECKS = ["check_dual_write", "check_consistency", "check_shadow_reads", "check_backup"]


def checklist_sensors() -> list:
    from migration_engine.gates.sensor import GateSensor

    cfg = config()
    co = cfg.cutover
    common = {"poke_interval": cfg.dual_write.poke_interval.total_seconds(),
              "timeout": co.checklist_timeout.total_seconds(), "fail_on": ("critical",)}
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
    ]


def rollout_pcts() -> list[int]:
    return [s.pct for s in config().cutover.rollout]
