"""Phase 5 (seed "Cutover"): the pre-cutover checklist, the gradual read rollout with automatic
rollback, and the write cutover; plus the flag and table-activity helpers that phase 6 and the
rollback DAGs share.

* ``flags``      - idempotent, audited flag changes; the write cutover point from the ledger.
* ``activity``   - pg_stat_user_tables write counters: "has anything written these tables?".
* ``rollout``    - the rollout plan and the per-step hold decision (pure, no Airflow).
* ``hold_watch`` - a step's hold: checks every interval, rolls back within one interval (polled by
                   ``migration_engine.airflow.triggers.ReadRolloutHoldTrigger``; the rollout-step and
                   keep-old-sync operators are in ``migration_engine.airflow.operators``).
* ``checklist``  - pre-cutover checklist gates (consistency run age, verified backup age).
* ``tasks``      - the bodies of the DAG's plain tasks.
"""
