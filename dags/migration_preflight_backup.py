"""migration_preflight_backup: the seed's pre-migration backup, verified by restoring it.

Tasks, in order (each one step of `migration_engine.backup_steps`, run by `StepRunner`: plan on a
dry run, else apply + verify, state in `migration_control.step_state`; any failure fails the run
and pages on-call as critical, and a failed check records a `failed` `preflight_backup` gate result):

0. **prepare** - the control schema (step state, ledger) exists (not on a dry run).
1. **check_disk_space** - free space in the backup directory >= database size x
   `backup.disk_space_factor`.
2. **dump_database** - `pg_dump -Fc` of the legacy database from an exported snapshot; in the same
   snapshot it records `pg_current_wal_lsn()` and every table's row count; writes
   `<file>.manifest.json` (size, SHA-256, LSN, counts, versions, run id) next to the dump. A retry
   in the same run finds the finished dump and does not dump again.
3. **verify_archive** - size and SHA-256 as recorded; `pg_restore --list` reads the archive and it has
   data for every table.
4. **verify_restore** - restores into a scratch database, compares every table's row count with the
   manifest, drops the scratch database (`backup.verify_restore`).
5. **record_manifest** - the manifest into the audit ledger and a `preflight_backup` gate result
   (one transaction).

**Params**: `dry_run` (log the exact commands and SQL, change nothing), `backup_dir` (overrides
`backup.dir`), `verify_only_path` (re-verify an existing dump against its manifest instead of taking
a new one). See docs/preflight-backup.md.
"""

from __future__ import annotations

from airflow.sdk import Param, chain, task

from migration_engine import backup_steps
from migration_engine.airflow.backup import backup_step
from migration_engine.airflow.dags import migration_dag
from migration_engine.airflow.tasks import on_legacy

PARAMS = {
    "dry_run": Param(False, type="boolean", title="Dry run",
                     description="Check disk space and print the pg_dump/pg_restore commands; write nothing."),
    "backup_dir": Param(None, type=["null", "string"], title="Backup directory",
                        description="Where the dump goes; empty = backup.dir from the migration config."),
    "verify_only_path": Param(None, type=["null", "string"], title="Verify an existing dump",
                              description="Path of a dump taken by this DAG: skip the dump, re-run every "
                                          "verification against its manifest."),
}


@migration_dag("migration_preflight_backup", doc_md=__doc__, tags_=("preflight", "backup"), params=PARAMS)
def migration_preflight_backup():
    @task
    def prepare() -> dict:
        return on_legacy(backup_steps.prepare, dry_run_aware=True)

    @task
    def check_disk_space() -> dict:
        return backup_step("disk_space")

    @task
    def dump_database() -> dict:
        return backup_step("dump")

    @task
    def verify_archive() -> dict:
        return backup_step("archive")

    @task
    def verify_restore() -> dict:
        return backup_step("restore")

    @task
    def record_manifest() -> dict:
        return backup_step("record")

    chain(prepare(), check_disk_space(), dump_database(), verify_archive(), verify_restore(), record_manifest())


migration_preflight_backup()
