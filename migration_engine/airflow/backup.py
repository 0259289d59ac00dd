"""The pre-flight backup's tasks: one backup step each, with this run's Params and connection.

Why here and not in the engine: the backup needs two things only a running task knows - the
trigger form's ``backup_dir`` / ``verify_only_path`` and the Airflow connection's libpq settings
(``pg_dump``/``pg_restore`` get them as environment, the password never on a command line).
Everything else is :mod:`migration_engine.backup_steps`, run through ``run_steps`` (a dry run
logs the exact commands and SQL and changes nothing).
"""

from __future__ import annotations

from typing import Any

from migration_engine.airflow.context import params, task_context
from migration_engine.airflow.tasks import run_steps


def backup_step(name: str) -> dict[str, Any]:
    """Run (or, dry run, plan) backup step ``name``; returns ``run_steps``' result plus the
    manifest of the dump this run works on and this run's check results (for XCom readers)."""
    from migration_engine import backup, backup_steps

    values = params()
    built: dict[str, Any] = {}

    def build(cfg):
        target = backup.Target.from_conn_id(cfg.connections.legacy)
        built.update(backup_steps.steps(cfg, target, backup_dir=values.get("backup_dir"),
                                        verify_only=values.get("verify_only_path")))
        return [built[name]]

    result = run_steps(build)
    manifest = _manifest(built[name].run)
    return {**manifest, **result} if manifest else result


def _manifest(run) -> dict[str, Any] | None:
    from migration_engine import backup_steps
    from migration_engine.backup import BackupError

    run_id = str(task_context()[1].get("run_id") or "manual")
    try:
        manifest = run.manifest(run_id)
    except BackupError:
        return None
    if manifest is None:
        return None
    checks = backup_steps.recorded_checks(manifest["file"], run_id)
    return {**manifest, "archive_check": checks.get("archive"), "restore_check": checks.get("restore")}
