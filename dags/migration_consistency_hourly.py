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
task's failure callback). **Params**: `dry_run` (log the plan, write nothing, send nothing).
See docs/phase3-4-consistency.md.
"""

from __future__ import annotations

from airflow.sdk import Param

from migration_engine.airflow.consistency import consistency_chain, hourly_failure_callback
from migration_engine.airflow.dags import config, migration_dag


@migration_dag(
    "migration_consistency_hourly",
    doc_md=__doc__,
    schedule=config().consistency.schedule,
    tags_=("phase4", "consistency", "scheduled"),
    default_args_={"on_failure_callback": hourly_failure_callback},
    params={
        "dry_run": Param(False, type="boolean", title="Dry run",
                         description="Log every check with the exact SQL it would send; write and send nothing."),
    },
)
def migration_consistency_hourly():
    consistency_chain("full", phase="hourly", escalate_failures=True)


migration_consistency_hourly()
