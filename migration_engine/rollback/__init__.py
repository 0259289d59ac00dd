"""The seed's three rollback procedures as DAGs.

* scenario 1, ``migration_rollback_dual_write``: dual-write off, verify the old path is healthy.
* scenario 2, ``migration_rollback_reads``: ``read_new_pct = 0``, verify the error rate is back at
  baseline within ``cutover.rollback_verify_window``.
* scenario 3, ``migration_rollback_writes`` (critical): approval, maintenance mode, restore the
  pre-cutover backup into a side database, sync every row written to the new tables since the
  cutover back into the old tables, verify, writes back to old, maintenance off (``writes``).

Modules: ``health`` (recovery checks), ``recovery_watch`` (the deferred recovery watch; its trigger and
operator are in ``migration_engine.airflow``),
``simple`` (scenarios 1 and 2), ``reverse`` (new -> old column mapping), ``writes`` (scenario 3).
"""
