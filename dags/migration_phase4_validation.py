"""migration_phase4_validation: Phase 4 - shadow reads and the consistency suites.

**enable_shadow_reads** first sets the `shadow_read_pct` flag (Param `shadow_read_pct`, default 100:
the seed reads both sides on every read) as a flag step (audited in the ledger, a no-op if already
at that value, state in `step_state`), so the application starts comparing. Then two branches, both must pass:

- **shadow_reads_gate** (deferrable, no worker slot while waiting): shadow-read mismatch rate
  below `cutover.shadow_mismatch_max_pct` (seed: 0.1 %) over `cutover.shadow_window`, with at
  least `cutover.shadow_min_reads` reads and no gap in the stats; figures broken down by cohort
  with the latest stored example mismatches. Fails at once on a critical mismatch rate, or when
  the window does not fill within `cutover.shadow_window`.
- **the consistency run** (kind `full`): the phase-3 diff (entities, references, count parity)
  plus the Great Expectations suites (`listings_count_parity`, `listings_row_parity`,
  `transactions_count_parity`, `cross_db_reference_integrity`, `tenant_payment_mode_validity`,
  `invoice_status_validity`). Data Docs are built under `consistency.data_docs_dir` (default
  `<project>/gx/uncommitted/data_docs/local_site/index.html`); the `run_suites` task log prints the path.

**record_validation** writes an audit-ledger entry; phase 5 reads the latest full run through
`migration_engine.consistency.store.last_consistency_run` (gate `consistency_passed_recently`).
Shadow reads stay on (phase 5's checklist re-checks them) until phase 6 turns them off.
**Params**: `shadow_read_pct` (1-100), `dry_run` (log the flag change, the checks and their SQL; the
gate is evaluated once and not waited for; nothing else is written). See docs/phase3-4-consistency.md.
"""

from __future__ import annotations

from airflow.sdk import Param, task

from migration_engine.airflow import consistency
from migration_engine.airflow.dags import config, migration_dag
from migration_engine.gates.sensor import GateSensor


@migration_dag(
    "migration_phase4_validation",
    doc_md=__doc__,
    tags_=("phase4", "consistency", "gate"),
    params={
        "shadow_read_pct": Param(100, type="integer", minimum=1, maximum=100, title="Shadow reads (% of reads)",
                                 description="Sets the shadow_read_pct flag (audited) before the shadow-read gate: "
                                 "that % of the application's reads also read the new tables and compare "
                                 "(seed 4.1 compares every read: 100)."),
        "dry_run": Param(False, type="boolean", title="Dry run",
                         description="Log the flag change and every check with its SQL; evaluate the gate once "
                         "without waiting; change nothing."),
    },
)
def migration_phase4_validation():
    cfg = config()

    @task
    def enable_shadow_reads() -> dict:
        return consistency.enable_shadow_reads()

    gate = GateSensor(
        task_id="shadow_reads_gate",
        gate="shadow_reads",
        poke_interval=cfg.cutover.check_interval,
        timeout=cfg.cutover.shadow_window,
        dry_run="{{ params.dry_run }}",
    )
    enable_shadow_reads() >> gate
    consistent = consistency.consistency_chain("full", phase="phase4")

    @task
    def record_validation(gate_result: dict, verdict: dict) -> dict:
        return consistency.record_validation(gate_result, verdict)

    record_validation(gate.output, consistent)


migration_phase4_validation()
