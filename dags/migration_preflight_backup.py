"""migration_preflight_backup: the seed's pre-migration backup, verified by restoring it.

Tasks, in order (each a separate check; any failure fails the run and pages on-call as critical):

1. **check_disk_space** - free space in the backup directory >= database size x
   `backup.disk_space_factor`.
2. **dump_database** - `pg_dump -Fc` of the legacy database from an exported snapshot; in the same
   snapshot it records `pg_current_wal_lsn()` and every table's row count; writes
   `<file>.manifest.json` (size, SHA-256, LSN, counts, versions) next to the dump.
3. **verify_archive** - size and SHA-256 as recorded; `pg_restore --list` reads the archive and it has
   data for every table.
4. **verify_restore** - restores into a scratch database, compares every table's row count with the
   manifest, drops the scratch database (`backup.verify_restore`).
5. **record_manifest** - the manifest into the audit ledger and a `preflight_backup` gate result.

**Params**: `dry_run` (print the commands, change nothing), `backup_dir` (overrides `backup.dir`),
`verify_only_path` (re-verify an existing dump against its manifest instead of taking a new one).
See docs/preflight-backup.md.
"""

from __future__ import annotations

from pathlib import Path

from airflow.sdk import Param, dag, task

from migration_engine.airflow.dags import START_DATE, config, default_args, tags

PARAMS = {
    "dry_run": Param(False, type="boolean", title="Dry run",
                     description="Check disk space and print the pg_dump/pg_restore commands; write nothing."),
    "backup_dir": Param(None, type=["null", "string"], title="Backup directory",
                        description="Where the dump goes; empty = backup.dir from the migration config."),
    "verify_only_path": Param(None, type=["null", "string"], title="Verify an existing dump",
                              description="Path of a dump taken by this DAG: skip the dump, re-run every "
                                          "verification against its manifest."),
}


@dag(
    dag_id="migration_preflight_backup",
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=default_args(),
    tags=tags("preflight", "backup"),
    params=PARAMS,
    doc_md=__doc__,
)
def migration_preflight_backup():
    @task
    def check_disk_space() -> dict:
        from migration_engine import backup

        params, _actor, _ctx = backup.task_params()
        cfg = config()
        backup_dir = Path(params.get("backup_dir") or cfg.backup.dir)
        return backup.run_check(cfg, "disk_space", lambda target: backup.check_disk_space(
            cfg, target, backup_dir, dry_run=bool(params["dry_run"])))

    @task
    def dump_database(disk: dict) -> dict:
        from migration_engine import backup

        params, _actor, _ctx = backup.task_params()
        cfg = config()
        if params.get("verify_only_path"):
            manifest = backup.load_manifest(params["verify_only_path"])
            print(f"verify only: re-checking {params['verify_only_path']} against its manifest")
            return {**manifest, "verify_only": True}
        return backup.run_check(cfg, "dump", lambda target: backup.dump(
            cfg, target, Path(disk["backup_dir"]), dry_run=bool(params["dry_run"])))

    @task
    def verify_archive(manifest: dict) -> dict:
        from migration_engine import backup

        if manifest.get("dry_run"):
            print(f"dry run: would check size/SHA-256 of {manifest['file']} and run pg_restore --list on it")
            return {"dry_run": True}
        return backup.run_check(config(), "archive", lambda _target: backup.verify_archive(
            manifest, manifest["server_version_num"]))

    @task
    def verify_restore(manifest: dict, archive: dict) -> dict:
        from migration_engine import backup

        if manifest.get("dry_run"):
            print(f"dry run: would restore {manifest['file']} into a scratch database and compare row counts")
            return {"dry_run": True}
        cfg = config()
        return backup.run_check(cfg, "restore", lambda target: backup.verify_restore(
            cfg, target, manifest, manifest["server_version_num"]))

    @task
    def record_manifest(manifest: dict, archive: dict, restore: dict) -> dict:
        from migration_engine import backup

        _params, actor, ctx = backup.task_params()
        if manifest.get("dry_run"):
            print("dry run: no manifest recorded")
            return {"dry_run": True}
        cfg = config()
        return backup.record_manifest(cfg, backup.Target.from_conn_id(cfg.connections.legacy), manifest, archive,
                                      restore, actor=actor, context=ctx)

    manifest = dump_database(check_disk_space())
    archive = verify_archive(manifest)
    record_manifest(manifest, archive, verify_restore(manifest, archive))


migration_preflight_backup()
