"""Consistency verification for phases 3 and 4 and the hourly run.

* ``diff``       - range checksums + bisection between two databases (reladiff / pt-table-checksum
  style): missing in new, missing in old, changed (with the columns), unlinked new rows.
* ``references`` - cross-database referential integrity (orphans), in primary-key chunks.
* ``counts``     - count parity between a legacy and a new table (e.g. transactions).
* ``suites``     - Great Expectations suites over the real tables (single-database checks) and over
  the diff engine's result tables (cross-database checks), Data Docs.
* ``store``      - run history in the control schema; ``last_consistency_run`` for phase 5.
* ``alerting``   - Slack escalation with deduplication and "resolved" messages.
* ``tasks``      - what the DAGs call.

Nothing here imports Airflow or GX at module level.
"""

from migration_engine.consistency.results import KINDS, CheckResult, Finding

__all__ = ["KINDS", "CheckResult", "Finding"]
