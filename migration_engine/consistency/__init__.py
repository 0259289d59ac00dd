"""Consistency verification for phases 3 and 4 and the hourly run.

* ``diff``       - range checksums + bisection between two databases (reladiff / pt-table-checksum
  style): missing in new, missing in old, changed (with the columns), unlinked new rows.
* ``references`` - cross-database referential integrity (orphans), in primary-key chunks, and count
  parity between a legacy and a new table (e.g. transactions).
* ``suites``     - Great Expectations suites over the real tables (single-database checks) and over
  the diff engine's result tables (cross-database checks), Data Docs.
* ``store``      - run history in the control schema; ``last_consistency_run`` for phase 5.
* ``alerting``   - Slack escalation with deduplication and "resolved" messages.
* ``runs``       - the checks of a config, the verdict of a run, the failure text, phase 4's ledger entry.
* ``explain``    - the exact SQL of each check, for dry-run plans.
* ``step``       - ``ConsistencyRun``: a run as a plan / apply / verify step (the DAGs run it through
  the Airflow layer, ``migration_engine.airflow.consistency``).

Nothing here imports Airflow; GX is imported inside functions only.
"""

from migration_engine.consistency.results import KINDS, CheckResult, Finding

__all__ = ["KINDS", "CheckResult", "Finding"]
