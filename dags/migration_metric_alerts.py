"""migration_metric_alerts: the seed's metric alerts (cross-DB latency, invoice and payment errors),
evaluated every `alerts.evaluate_every` (default 5 min).

Each `alerts.metrics` row (operation reported by the application through the stats contract,
metric `error_pct` or `p95_ms`, threshold, severity, window, `min_samples`) is measured over its
window, recorded in `migration_control.gate_results` (gate `metric_alert:<name>`), pages once when
above its threshold (later evaluations update that Slack message) and is **resolved** when the
metric is back within it. Too little traffic in the window: not judged, nothing changes.
Changes nothing but the control schema's gate results and alert state. **dry_run** (Param): measure
and log only. See docs/oncall-slack.md.
"""

from __future__ import annotations

from airflow.sdk import Param, task

from migration_engine.airflow.dags import config, migration_dag
from migration_engine.airflow.tasks import on_legacy


@migration_dag("migration_metric_alerts", doc_md=__doc__, schedule=config().alerts.evaluate_every,
               tags_=("alerts", "scheduled"),
               params={"dry_run": Param(False, type="boolean", title="Dry run",
                                        description="Measure and log every metric alert; record and send nothing.")})
def migration_metric_alerts():
    @task
    def evaluate_metric_alerts() -> dict:
        from migration_engine.metric_alerts import evaluate_all

        return on_legacy(evaluate_all, dry_run_aware=True)

    evaluate_metric_alerts()


migration_metric_alerts()
