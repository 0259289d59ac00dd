"""The pre-flight backup as steps: disk space, dump, archive check, restore check, manifest record.

Each is a :class:`~migration_engine.steps.Step` run by ``StepRunner`` (state in ``step_state``, a
ledger entry per action), so the backup has the same plan / apply / verify as every other change:

* **plan** - ``apply`` on a planning executor: the exact ``pg_dump`` / ``pg_restore`` commands (with
  the libpq settings they run with, never the password), the snapshot SQL, the scratch-database
  SQL and the ledger/gate-result inserts, each recorded with ``ex.action``; nothing is written
  (no directory, no file, no scratch database, no row);
* **apply** - idempotent where it can be: the dump step finds this run's finished dump and sends
  nothing (a retry after a failed verification does not dump again), removes only unfinished
  ``.partial`` leftovers (a verified backup is never deleted), and the record step finds its own
  ledger entry; the checks always re-run (they change nothing but their recorded result);
* **verify** - the archive and test-restore checks of *this run* passed for the dump's current
  SHA-256, the file is still there with its recorded size, the scratch database is gone and the
  manifest is in the ledger.

Which dump a run works on: the dump step writes the run id into ``<file>.manifest.json``; the
later steps (separate tasks, separate processes) find the newest manifest in the backup
directory with that run id, or the ``verify_only`` dump. Check results of each run go to
``<file>.checks.json`` next to it (the manifest stays what the dump step wrote).

No step has a revert (``RevertRefused``): a verified backup is the safety net of every later
rollback (scenario 3 restores exactly this dump), so nothing deletes it automatically; the checks
leave nothing behind to revert (the scratch database is dropped inside the check).

A failed check also records a ``failed`` ``preflight_backup`` gate result (best effort); the task's
failure callback pages on-call (critical).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from migration_engine import backup, control
from migration_engine.backup import BackupError, Target
from migration_engine.config import MigrationConfig
from migration_engine.ddl import DdlExecutor
from migration_engine.errors import Refused
from migration_engine.steps import Step

log = logging.getLogger(__name__)

PHASE = "preflight"
CHECKS_SUFFIX = ".checks.json"
STEP_NAMES = ("disk_space", "dump", "archive", "restore", "record")


class BackupNotReady(BackupError, Refused):
    """A later backup step found no dump (or no passed check) of this run to work on."""


# --- the run's backup ----------------------------------------------------------------------
def checks_path(dump_file: Path | str) -> Path:
    return Path(str(dump_file) + CHECKS_SUFFIX)


def recorded_checks(dump_file: Path | str, run_id: str) -> dict[str, Any]:
    path = checks_path(dump_file)
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text()).get(run_id, {})
    except ValueError:
        return {}


def record_check(dump_file: Path | str, run_id: str, name: str, result: dict[str, Any]) -> None:
    """Add one check result of one run to ``<file>.checks.json`` (written atomically)."""
    path = checks_path(dump_file)
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault(run_id, {})[name] = result
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    tmp.replace(path)


class BackupRun:
    """What the backup steps of one DAG run share: the target, the directory, the dump they check."""

    def __init__(self, cfg: MigrationConfig, target: Target, *, backup_dir: str | Path | None = None,
                 verify_only: str | Path | None = None):
        self.cfg = cfg
        self.target = target
        self.backup_dir = Path(backup_dir or cfg.backup.dir)
        self.verify_only = Path(verify_only) if verify_only else None

    @staticmethod
    def run_id(ex: DdlExecutor) -> str:
        return str(ex.context.get("run_id") or "manual")

    def info(self, ex: DdlExecutor) -> dict[str, Any]:
        return backup.database_info(ex.conn)

    def manifest(self, run_id: str) -> dict[str, Any] | None:
        """The dump run ``run_id`` works on: ``verify_only``'s, else its newest, else None."""
        if self.verify_only is not None:
            return backup.load_manifest(self.verify_only)
        if not self.backup_dir.is_dir():
            return None
        for path in sorted(self.backup_dir.glob("*.dump" + backup.MANIFEST_SUFFIX), reverse=True):
            try:
                data = json.loads(path.read_text())
            except ValueError:
                continue
            if data.get("run_id") == run_id and Path(data.get("file", "")).is_file():
                return data
        return None

    def current(self, ex: DdlExecutor) -> dict[str, Any]:
        """This run's dump; while planning, the one the dump step would write."""
        manifest = self.manifest(self.run_id(ex))
        if manifest is not None:
            return manifest
        if ex.planning:
            info = self.info(ex)
            tables = {f"{s}.{t}": None for s, t in backup.list_tables(ex.conn)}
            return {"file": str(backup.dump_path(self.backup_dir, info["database"])), "planned": True,
                    "sha256": "<computed after the dump>", "size_bytes": "<after the dump>",
                    "wal_lsn": "<read in the dump's snapshot>", "snapshot_taken_at": "<at the dump>",
                    "total_rows": "<counted in the dump's snapshot>", "tables": tables, **info}
        raise BackupNotReady(f"no dump of this run ({self.run_id(ex)}) in {self.backup_dir}: the dump_database "
                             f"step has not completed")

    def guarded(self, ex: DdlExecutor, check: str, fn: Callable[[], Any]) -> Callable[[], Any]:
        """``fn`` that, when it fails, also leaves a ``failed`` preflight_backup gate result."""
        def run() -> Any:
            try:
                return fn()
            except Exception as exc:
                backup.record_failure(self.cfg, self.target, check, exc, context=ex.context)
                raise
        return run


class BackupStep(Step):
    phase = PHASE

    def __init__(self, run: BackupRun):
        self.run = run

    def before_state(self, ex: DdlExecutor) -> dict[str, Any]:
        return {}  # nothing to restore: see the module docstring (no revert)


# --- the steps -----------------------------------------------------------------------------
class DiskSpaceStep(BackupStep):
    """Free space in the backup directory >= database size x backup.disk_space_factor."""

    step_id = "preflight.backup.disk_space"
    title = "backup directory exists, is writable and has room for the dump"

    def _figures(self, ex: DdlExecutor) -> tuple[int, int, Path]:
        probe = self.run.backup_dir
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        needed = int(self.run.info(ex)["size_bytes"] * self.run.cfg.backup.disk_space_factor)
        return shutil.disk_usage(probe).free, needed, probe

    def apply(self, ex: DdlExecutor) -> list[str]:
        d = self.run.backup_dir
        check = self.run.guarded(ex, "disk_space", lambda: backup.check_disk_space(
            self.run.cfg, self.run.target, d, dry_run=False))
        if ex.planning:  # the check itself only reads; shown and run, the directory is not created
            ex.action(f"mkdir -p {d}  # then: writable, free space >= database size x "
                      f"{self.run.cfg.backup.disk_space_factor}", lambda: None)
            result = backup.check_disk_space(self.run.cfg, self.run.target, d, dry_run=True)
        else:
            result = ex.action(f"mkdir -p {d}  # then: writable, free space >= database size x "
                               f"{self.run.cfg.backup.disk_space_factor}", check)
        return [f"{backup._human(result['free_bytes'])} free in {d}, need {backup._human(result['needed_bytes'])}"]

    def problems(self, ex: DdlExecutor) -> list[str]:
        d = self.run.backup_dir
        if not d.is_dir():
            return [f"backup directory {d} does not exist"]
        if not os.access(d, os.W_OK):
            return [f"backup directory {d} is not writable by this worker"]
        free, needed, _probe = self._figures(ex)
        return [] if free >= needed else [f"only {backup._human(free)} free in {d}, need {backup._human(needed)}"]


class DumpStep(BackupStep):
    """pg_dump -Fc from one exported snapshot, row counts and WAL LSN in the same snapshot."""

    step_id = "preflight.backup.dump"
    title = "pg_dump of the legacy database from one snapshot, with a manifest"

    def apply(self, ex: DdlExecutor) -> list[str]:
        run = self.run
        if run.verify_only is not None:
            manifest = backup.load_manifest(run.verify_only)
            return [f"verify only: no new dump, re-checking {manifest['file']} against its manifest"]
        existing = run.manifest(run.run_id(ex))
        if existing is not None and Path(existing["file"]).stat().st_size == existing["size_bytes"]:
            return [f"already dumped in this run: {existing['file']} (nothing sent)"]
        leftovers = sorted(run.backup_dir.glob("*.dump.partial")) if run.backup_dir.is_dir() else []
        if leftovers:  # unfinished dumps of interrupted runs: never a verified backup
            ex.action("rm -f " + " ".join(str(p) for p in leftovers),
                      lambda: [p.unlink(missing_ok=True) for p in leftovers])
        info = run.info(ex)
        pg_dump, _version = backup.find_client("pg_dump", info["server_version_num"])
        path = backup.dump_path(run.backup_dir, info["database"])
        counts = [ex.render("backup/count_rows.sql", {"schema": s, "table": t}) for s, t in backup.list_tables(ex.conn)]
        plan = "\n".join([
            "-- one snapshot for the dump, the row counts and the WAL position:",
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;",
            ex.render("backup/export_snapshot.sql"),
            f"{run.target.shown_env()} " + " ".join(backup.dump_command(pg_dump, path, "<snapshot exported above>")),
            f"-- while pg_dump runs, in the same snapshot ({len(counts)} tables):",
            *counts,
            "COMMIT;",
            f"mv {backup.partial_path(path)} {path}",
            f"-- manifest (size, SHA-256, LSN, counts, versions, run id) to {backup.manifest_path(path)}",
        ])
        manifest = ex.action(plan, run.guarded(ex, "dump", lambda: backup.take_dump(run.target, path,
                                                                                   context=ex.context)))
        if ex.planning:
            return [f"would dump {info['database']} to {path}"]
        return [f"dumped {manifest['database']} to {path}: {manifest['size_bytes']} bytes, "
                f"{manifest['total_rows']} rows, WAL {manifest['wal_lsn']}"]

    def problems(self, ex: DdlExecutor) -> list[str]:
        try:
            manifest = self.run.manifest(self.run.run_id(ex))
        except BackupError as exc:
            return [str(exc)]
        if manifest is None:
            return [f"no finished dump of run {self.run.run_id(ex)} in {self.run.backup_dir}"]
        if self.run.verify_only is not None:
            return []  # nothing was dumped: whether the existing file is intact is verify_archive's question
        size = Path(manifest["file"]).stat().st_size
        return [] if size == manifest["size_bytes"] else [
            f"{manifest['file']} is {size} bytes, its manifest recorded {manifest['size_bytes']}"]


class _CheckStep(BackupStep):
    check: str

    def _recorded(self, ex: DdlExecutor) -> tuple[dict[str, Any] | None, list[str]]:
        """This run's result of this check for the dump as it is now (None + problems if not)."""
        try:
            manifest = self.run.manifest(self.run.run_id(ex))
        except BackupError as exc:
            return None, [str(exc)]
        if manifest is None:
            return None, [f"no dump of run {self.run.run_id(ex)} to check"]
        path = Path(manifest["file"])
        if path.stat().st_size != manifest["size_bytes"]:
            return None, [f"{path} is {path.stat().st_size} bytes, its manifest recorded {manifest['size_bytes']}"]
        result = recorded_checks(path, self.run.run_id(ex)).get(self.check)
        if result is None:
            return None, [f"the {self.check} check of {path} has not passed in run {self.run.run_id(ex)}"]
        if result.get("sha256") != manifest["sha256"]:
            return None, [f"the {self.check} check ran on another version of {path} (SHA-256 differs)"]
        return result, []


class VerifyArchiveStep(_CheckStep):
    """Size and SHA-256 as recorded; ``pg_restore --list`` reads it and lists data for every table."""

    step_id = "preflight.backup.verify_archive"
    title = "the archive is intact and lists data for every table"
    check = "archive"

    def apply(self, ex: DdlExecutor) -> list[str]:
        run = self.run
        manifest = run.current(ex)
        version = manifest["server_version_num"]
        pg_restore, _version = backup.find_client("pg_restore", version)
        path = manifest["file"]

        def check() -> dict[str, Any]:
            result = {**backup.verify_archive(manifest, version), "sha256": manifest["sha256"]}
            record_check(path, run.run_id(ex), self.check, result)
            return result

        ex.action(f"sha256sum {path}  # must equal the manifest's {manifest['sha256']}, size too\n"
                  f"{pg_restore} --list {path}  # must have TABLE DATA for each of {len(manifest['tables'])} tables",
                  run.guarded(ex, "archive", check))
        return [f"{'would check' if ex.planning else 'checked'} {path}: SHA-256 and pg_restore --list"]

    def problems(self, ex: DdlExecutor) -> list[str]:
        return self._recorded(ex)[1]


class VerifyRestoreStep(_CheckStep):
    """Restore into a scratch database, compare every table's row count, drop the scratch database."""

    step_id = "preflight.backup.verify_restore"
    title = "the dump restores with the same row count in every table"
    check = "restore"

    def apply(self, ex: DdlExecutor) -> list[str]:
        run = self.run
        cfg = run.cfg
        manifest = run.current(ex)
        path = manifest["file"]
        if not cfg.backup.verify_restore:
            ex.action(f"-- backup.verify_restore is false: {path} is not test-restored",
                      lambda: record_check(path, run.run_id(ex), self.check,
                                           {"skipped": True, "sha256": manifest["sha256"]}))
            return ["restore check disabled (backup.verify_restore: false)"]
        version = manifest["server_version_num"]
        pg_restore, _version = backup.find_client("pg_restore", version)
        scratch = backup.scratch_name()
        timeouts = {"lock_timeout": f"{int(cfg.ddl.lock_timeout.total_seconds() * 1000)}ms",
                    "statement_timeout": f"{int(cfg.ddl.statement_timeout.total_seconds() * 1000)}ms"}
        plan = "\n".join([
            ex.render("ddl/set_timeouts.sql", params=timeouts),
            ex.render("backup/create_scratch_database.sql", {"database": scratch}),
            f"{run.target.shown_env(scratch)} " + " ".join(backup.restore_command(pg_restore, scratch, path)),
            f"-- in {scratch}: SELECT count(*) of each of {len(manifest['tables'])} tables, compared with the "
            f"manifest",
            ex.render("backup/drop_scratch_database.sql", {"database": scratch}),
        ])

        def check() -> dict[str, Any]:
            result = {**backup.verify_restore(cfg, run.target, manifest, version, scratch=scratch),
                      "sha256": manifest["sha256"]}
            record_check(path, run.run_id(ex), self.check, result)
            return result

        ex.action(plan, run.guarded(ex, "restore", check))
        return [f"{'would restore' if ex.planning else 'restored'} {path} into {scratch} and compare row counts"]

    def problems(self, ex: DdlExecutor) -> list[str]:
        result, problems = self._recorded(ex)
        scratch = (result or {}).get("scratch_database")
        if scratch and ex.query("backup/scratch_databases.sql", params={"prefix": scratch}):
            problems.append(f"the restore check's scratch database {scratch} was not dropped")
        return problems


class RecordManifestStep(BackupStep):
    """The verified manifest into the ledger (``backup.manifest``) + a passed gate result, as one."""

    step_id = "preflight.backup.record_manifest"
    title = "the verified backup's manifest is in the audit ledger"

    def _entry_id(self, ex: DdlExecutor, manifest: dict[str, Any]) -> int | None:
        if not control.control_schema_exists(ex.conn, self.run.cfg.control_schema):
            return None  # only possible while planning before the control schema exists
        rows = ex.query("backup/manifest_recorded.sql", {"schema": self.run.cfg.control_schema},
                        {"file": manifest["file"], "sha256": manifest["sha256"], "run_id": self.run.run_id(ex)})
        return rows[0][0] if rows else None

    def apply(self, ex: DdlExecutor) -> list[str]:
        run, cfg = self.run, self.run.cfg
        manifest = run.current(ex)
        checks = recorded_checks(manifest["file"], run.run_id(ex)) if not manifest.get("planned") else {}
        missing = [c for c in ("archive", "restore") if checks.get(c, {}).get("sha256") != manifest["sha256"]]
        if missing and not ex.planning:
            raise BackupNotReady(f"{manifest['file']}: the {' and '.join(missing)} check(s) have not passed in run "
                                 f"{run.run_id(ex)}; not recording it as a verified backup")
        found = self._entry_id(ex, manifest)
        if found is not None:
            return [f"already recorded: ledger entry #{found} (nothing sent)"]
        ids = {"schema": cfg.control_schema}
        entry = backup.manifest_entry(manifest, checks.get("archive", {}), checks.get("restore", {}),
                                      verified_at="<now>")
        audit = ex.render("control/audit_append.sql", ids, {
            "actor": ex.actor, "action": "backup.manifest", "target": manifest["file"],
            "details": "<context + manifest + check results, as JSON>",
            "reason": "pre-migration backup taken and verified"})
        gate = ex.render("control/gate_result_insert.sql", ids, backup.gate_result(
            manifest, checks.get("restore", {}), verified_at=entry["verified_at"], context=ex.context))

        def record() -> dict[str, Any]:
            with ex.transaction():
                return backup.record_manifest_on(ex.conn, cfg, manifest, checks["archive"], checks["restore"],
                                                 actor=ex.actor, context=ex.context)

        done = ex.action(f"-- one transaction:\n{audit}\n{gate}", record)
        return [f"would record {manifest['file']}" if ex.planning else f"recorded as ledger entry #{done['audit_id']}"]

    def problems(self, ex: DdlExecutor) -> list[str]:
        try:
            manifest = self.run.manifest(self.run.run_id(ex))
        except BackupError as exc:
            return [str(exc)]
        if manifest is None:
            return [f"no dump of run {self.run.run_id(ex)}"]
        return [] if self._entry_id(ex, manifest) else [f"no backup.manifest ledger entry for {manifest['file']} "
                                                         f"in run {self.run.run_id(ex)}"]


# --- building ------------------------------------------------------------------------------
def steps(cfg: MigrationConfig, target: Target, *, backup_dir: str | Path | None = None,
          verify_only: str | Path | None = None) -> dict[str, Step]:
    """The five steps of one backup run, by name (one DAG task each, in this order)."""
    run = BackupRun(cfg, target, backup_dir=backup_dir, verify_only=verify_only)
    return {"disk_space": DiskSpaceStep(run), "dump": DumpStep(run), "archive": VerifyArchiveStep(run),
            "restore": VerifyRestoreStep(run), "record": RecordManifestStep(run)}


def prepare(conn, cfg: MigrationConfig, *, actor: str = "", context: dict | None = None,
            dry_run: bool = False) -> dict[str, Any]:
    """The control schema (step state, ledger) must exist before the first step; not in a dry run."""
    exists = control.control_schema_exists(conn, cfg.control_schema)
    if not dry_run and not exists:
        conn.rollback()  # end the read above: creating the schema runs in autocommit
        conn.autocommit = True
        control.ensure_control_schema(conn, cfg.control_schema, cfg.ddl)
    return {"dry_run": dry_run, "control_schema": cfg.control_schema, "existed": exists}
