"""migration_consistency_hourly: the seed's Phase 4.2 automated consistency checks, every hour.

Runs the full consistency run (the phase-3 diff of every entity, cross-database references and
count parity, then the Great Expectations suites with Data Docs) on `consistency.schedule`
(default `@hourly`; catch-up off, one run at a time), writes the results to
`migration_control.consistency_runs`, and escalates:

- a failing run pages the critical Slack channel with counts and the first
  `consistency.max_reported_keys` offending keys per check;
- while the same failure persists, later runs **update that message** (latest counts, occurrence
  count) instead of paging again;
- the first passing run marks it **resolved** and says so in the thread.

The failure of a check task is part of that one deduplicated alert (no second page from the
task's failure callback). See docs/phase3-4-consistency.md.
"""

from __future__ import annotations

from airflow.sdk import dag

from migration_engine.airflow.dags import START_DATE, config, default_args, tags
from migration_engine.consistency.alerting import hourly_failure_callback


@dag(
    dag_id="migration_consistency_hourly",
    schedule=config().consistency.schedule,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(on_failure_callback=hourly_failure_callback),
    tags=tags("phase4", "consistency", "scheduled"),
    doc_md=__doc__,
)
def migration_consistency_hourly():
    from migration_engine.consistency.dag_parts import consistency_chain

    consistency_chain("full", escalate=True)


migration_consistency_hourly()
