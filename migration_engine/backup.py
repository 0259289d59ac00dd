"""Pre-flight backup: a verified ``pg_dump -Fc`` of the legacy database, with a manifest.

The seed's checklist (dump, record ``pg_current_wal_lsn()``, ``pg_restore --list | wc -l``) only
proves the archive's table of contents is readable. Here the backup counts only when:

* there was room for it (free space >= database size x ``backup.disk_space_factor``);
* it was taken from one exported snapshot (``pg_export_snapshot`` + ``pg_dump --snapshot``) in which
  the WAL position and every table's row count were read too, so the manifest describes exactly
  what is in the file even while the application keeps writing;
* its SHA-256 still matches, ``pg_restore --list`` reads it and lists data for every table;
* it restores into a scratch database with the same row count for every table
  (``backup.verify_restore``), which is then dropped.

The manifest (file, size, SHA-256, LSN, counts, versions) is written next to the dump
(``<file>.manifest.json``) and to the audit ledger, and a ``preflight_backup`` gate result is
recorded so the cutover checklist can require a recent verified backup. Any failed check raises;
the DAG's failure callback pages on-call (critical).

This module holds the checks themselves (no Airflow: callers pass a :class:`Target` and the
ledger context). :mod:`migration_engine.backup_steps` runs them as steps (plan / apply / verify,
state in ``step_state``), which is what the ``migration_preflight_backup`` DAG does.

Client binaries (pg_dump/pg_restore) must be at least the server's major version: the server's own
``$PG_BINDIR``, then ``/usr/lib/postgresql/<major>/bin``, then newer majors there, then PATH. They
talk libpq over the Airflow connection, so they need no ``runuser`` even as root.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import extensions

from migration_engine import control, db, sqlfiles
from migration_engine.config import MigrationConfig
from migration_engine.errors import MigrationError

log = logging.getLogger(__name__)

GATE = "preflight_backup"
MANIFEST_SUFFIX = ".manifest.json"
SCRATCH_PREFIX = "zdm_restore_check_"


class BackupError(MigrationError):
    """The backup could not be taken or did not pass verification; the message lists every problem."""


# --- connection and binaries ---------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """The database to back up, with every libpq setting of its connection (TLS included).

    The password never goes on a command line: ``pg_dump``/``pg_restore`` get ``PG*`` variables.
    """

    info: db.ConnectionInfo

    @classmethod
    def from_conn_id(cls, conn_id: str) -> Target:
        return cls(db.get_connection(conn_id))

    @property
    def conn_id(self) -> str:
        return self.info.conn_id

    @property
    def user(self) -> str | None:
        return self.info.login

    def env(self, dbname: str | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update({"PGCONNECT_TIMEOUT": "10", "PGAPPNAME": "zdm-preflight-backup"})
        env.update(self.info.pg_env(dbname))
        return env

    def shown_env(self, dbname: str | None = None) -> str:
        """The libpq settings a command runs with, as shown in plans and logs (never the password)."""
        shown = {k: v for k, v in self.info.pg_env(dbname).items() if k != "PGPASSWORD"}
        return " ".join(f"{k}={v}" for k, v in shown.items())

    def connect(self, dbname: str | None = None):
        return psycopg2.connect(**{"connect_timeout": 10, **self.info.connect_kwargs(dbname),
                                   "application_name": "zdm-preflight-backup"})


def _major(version_num: int) -> int:
    return version_num // 10000 if version_num >= 100000 else version_num // 100


def find_client(name: str, server_version_num: int) -> tuple[str, str]:
    """(path, ``--version`` output) of a ``pg_dump``/``pg_restore`` able to handle this server."""
    server_major = _major(server_version_num)
    candidates = [Path(os.environ["PG_BINDIR"]) / name] if os.environ.get("PG_BINDIR") else []
    candidates.append(Path(f"/usr/lib/postgresql/{server_major}/bin") / name)
    newest_first = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True,
                          key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    candidates += [d / name for d in newest_first]
    if shutil.which(name):
        candidates.append(Path(shutil.which(name)))
    tried = []
    for path in dict.fromkeys(candidates):
        if not path.exists():
            continue
        out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=30)
        m = re.search(r"(\d+)(?:\.(\d+))?", out.stdout)
        major = int(m.group(1)) if m else 0
        tried.append(f"{path} ({out.stdout.strip() or 'unknown version'})")
        if major >= server_major:
            return str(path), out.stdout.strip()
    raise BackupError(f"no {name} of PostgreSQL major version >= {server_major} (the server's) found; tried: "
                      f"{tried or 'nothing on PATH or in /usr/lib/postgresql/*/bin'}. Install the matching "
                      f"client (e.g. apt-get install postgresql-client-{server_major}) or set PG_BINDIR")


# --- helpers -------------------------------------------------------------------------------
def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def database_info(conn) -> dict[str, Any]:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "backup/database_info.sql")
        database, size, version_num, version = cur.fetchone()
    return {"database": database, "size_bytes": size, "server_version_num": version_num,
            "server_version": version}


def list_tables(conn) -> list[tuple[str, str]]:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "backup/list_tables.sql")
        return [tuple(r) for r in cur.fetchall()]


def count_rows(conn) -> dict[str, int]:
    out = {}
    with conn.cursor() as cur:
        for schema, table in list_tables(conn):
            sqlfiles.run(cur, "backup/count_rows.sql", {"schema": schema, "table": table})
            out[f"{schema}.{table}"] = cur.fetchone()[0]
    return out


def manifest_path(dump_path: Path | str) -> Path:
    return Path(str(dump_path) + MANIFEST_SUFFIX)


def load_manifest(dump_path: Path | str) -> dict[str, Any]:
    """The manifest written next to a dump (verify-only runs re-check an existing backup with it)."""
    path = manifest_path(dump_path)
    if not Path(dump_path).exists():
        raise BackupError(f"dump file {dump_path} does not exist")
    if not path.exists():
        raise BackupError(f"no manifest {path} next to {dump_path}: only dumps taken by this DAG (which writes "
                          f"it) can be verified against their recorded checksum and row counts")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise BackupError(f"manifest {path} is not valid JSON: {exc}") from None


# --- the checks ----------------------------------------------------------------------------
def check_disk_space(cfg: MigrationConfig, target: Target, backup_dir: Path, *, dry_run: bool) -> dict[str, Any]:
    """Free space in ``backup_dir`` >= database size x backup.disk_space_factor (creates the dir)."""
    with target.connect() as conn:
        info = database_info(conn)
    conn.close()
    probe = backup_dir
    if dry_run:
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
    else:
        try:
            backup_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackupError(f"cannot create backup directory {backup_dir}: {exc}") from None
        if not os.access(backup_dir, os.W_OK):
            raise BackupError(f"backup directory {backup_dir} is not writable by this worker")
    free = shutil.disk_usage(probe).free
    needed = int(info["size_bytes"] * cfg.backup.disk_space_factor)
    result = {**info, "backup_dir": str(backup_dir), "free_bytes": free, "needed_bytes": needed,
              "disk_space_factor": cfg.backup.disk_space_factor}
    log.info("disk space: %s free in %s, need %s (database %s x %.1f)", _human(free), probe, _human(needed),
             _human(info["size_bytes"]), cfg.backup.disk_space_factor)
    if free < needed:
        raise BackupError(f"not enough disk space for the backup: {_human(free)} free in {probe}, need "
                          f"{_human(needed)} (database {info['database']} is {_human(info['size_bytes'])} x "
                          f"backup.disk_space_factor {cfg.backup.disk_space_factor}). Free space or point "
                          f"backup.dir (or the backup_dir param) elsewhere")
    return result


def dump_path(backup_dir: Path, database: str, now: datetime | None = None) -> Path:
    """``<db>_pre_migration_<UTC stamp>.dump``: names sort by time, a new run never overwrites."""
    return backup_dir / f"{database}_pre_migration_{(now or datetime.now(UTC)):%Y%m%d_%H%M%S}.dump"


def partial_path(path: Path) -> Path:
    """Where pg_dump writes until it has finished; renamed to ``path`` only when complete."""
    return path.with_name(path.name + ".partial")


def dump_command(pg_dump: str, path: Path, snapshot: str | None = None) -> list[str]:
    cmd = [pg_dump, "--format=custom", "--no-password", f"--file={partial_path(path)}"]
    return cmd + [f"--snapshot={snapshot}"] if snapshot else cmd


def take_dump(target: Target, path: Path, *, context: dict[str, Any] | None = None) -> dict[str, Any]:
    """pg_dump -Fc into ``path`` from an exported snapshot; row counts and WAL LSN read in the same
    snapshot; writes and returns the manifest (``context``'s dag/run ids go into it)."""
    partial = partial_path(path)
    if path.exists():  # never overwrite a dump: it may be a verified backup
        raise BackupError(f"{path} already exists; not overwriting it - start the dump again in a second")
    conn = target.connect()
    try:
        info = database_info(conn)
        pg_dump, pg_dump_version = find_client("pg_dump", info["server_version_num"])
        conn.rollback()  # end the catalog reads above; the snapshot transaction starts fresh
        conn.set_session(isolation_level=extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        with conn.cursor() as cur:
            sqlfiles.run(cur, "backup/export_snapshot.sql")
            snapshot, lsn, taken_at = cur.fetchone()
        cmd = dump_command(pg_dump, path, snapshot)
        log.info("dumping %s at WAL %s: %s", info["database"], lsn, " ".join(cmd))
        started = time.monotonic()
        proc = subprocess.Popen(cmd, env=target.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            counts = count_rows(conn)  # same snapshot as the dump, while pg_dump runs
        except Exception:
            proc.kill()
            proc.communicate()
            partial.unlink(missing_ok=True)
            raise
        _out, err = proc.communicate()
        conn.rollback()  # the snapshot may go now: pg_dump has finished with it
        if proc.returncode != 0:
            partial.unlink(missing_ok=True)
            raise BackupError(f"pg_dump of {info['database']} failed ({proc.returncode}): {err.strip()[-2000:]}")
        partial.rename(path)
    finally:
        conn.close()
    ctx = context or {}
    manifest = {
        "file": str(path), "size_bytes": path.stat().st_size, "sha256": sha256_file(path),
        "database": info["database"], "database_size_bytes": info["size_bytes"],
        "server_version": info["server_version"], "server_version_num": info["server_version_num"],
        "pg_dump": pg_dump_version, "conn_id": target.conn_id,
        "wal_lsn": lsn, "snapshot_taken_at": taken_at.isoformat(), "duration_s": round(time.monotonic() - started, 2),
        "tables": counts, "total_rows": sum(counts.values()),
        "dag_id": ctx.get("dag_id"), "run_id": ctx.get("run_id"),
    }
    manifest_path(path).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    log.info("dump %s: %s, sha256 %s, %d tables, %d rows, WAL %s", path, _human(manifest["size_bytes"]),
             manifest["sha256"], len(counts), manifest["total_rows"], lsn)
    return manifest


def dump(cfg: MigrationConfig, target: Target, backup_dir: Path, *, dry_run: bool = False,
         context: dict[str, Any] | None = None) -> dict[str, Any]:
    """A new dump in ``backup_dir`` (or, ``dry_run``, the command it would run); see :func:`take_dump`."""
    conn = target.connect()
    try:
        info = database_info(conn)
        path = dump_path(backup_dir, info["database"])
        if dry_run:
            pg_dump, _version = find_client("pg_dump", info["server_version_num"])
            command = dump_command(pg_dump, path, "<exported at run time>")
            return {"dry_run": True, "file": str(path), "command": command, "tables": len(list_tables(conn)), **info}
    finally:
        conn.close()
    return take_dump(target, path, context=context)


_TOC_DATA_RE = re.compile(r"^\d+;\s+\d+\s+\d+\s+TABLE DATA\s+(\S+)\s+(.+?)\s+\S+$")


def verify_archive(manifest: dict[str, Any], server_version_num: int) -> dict[str, Any]:
    """Size and SHA-256 as recorded; ``pg_restore --list`` reads it and has data for every table."""
    path = Path(manifest["file"])
    problems: list[str] = []
    if not path.exists():
        raise BackupError(f"backup {path} failed verification: the file does not exist")
    size = path.stat().st_size
    if size != manifest["size_bytes"]:
        problems.append(f"size is {size} bytes, the manifest recorded {manifest['size_bytes']}")
    digest = sha256_file(path)
    if digest != manifest["sha256"]:
        problems.append(f"SHA-256 is {digest}, the manifest recorded {manifest['sha256']} (changed or corrupted)")
    pg_restore, version = find_client("pg_restore", server_version_num)
    proc = subprocess.run([pg_restore, "--list", str(path)], capture_output=True, text=True, timeout=3600)
    entries = [ln for ln in proc.stdout.splitlines() if ln.strip() and not ln.startswith(";")]
    data = {f"{m.group(1)}.{m.group(2)}" for ln in entries if (m := _TOC_DATA_RE.match(ln))}
    if proc.returncode != 0:
        problems.append(f"pg_restore --list failed ({proc.returncode}): {proc.stderr.strip()[-1000:]}")
    else:
        missing = sorted(set(manifest["tables"]) - data)
        if missing:
            problems.append(f"pg_restore --list has no TABLE DATA entry for {missing}")
    if problems:
        raise BackupError(f"backup {path} failed verification:\n  - " + "\n  - ".join(problems))
    log.info("archive %s: sha256 ok, pg_restore --list ok (%d TOC entries, %d tables with data)", path,
             len(entries), len(data))
    return {"file": str(path), "sha256_ok": True, "toc_entries": len(entries), "tables_with_data": len(data),
            "pg_restore": version}


def scratch_name(now: datetime | None = None) -> str:
    """The restore check's own scratch database (only names of this shape are ever dropped)."""
    return f"{SCRATCH_PREFIX}{(now or datetime.now(UTC)):%Y%m%d%H%M%S}_{os.getpid()}"


def restore_command(pg_restore: str, scratch: str, path: Path | str) -> list[str]:
    return [pg_restore, "--no-owner", "--no-acl", "--exit-on-error", f"--dbname={scratch}", str(path)]


def verify_restore(cfg: MigrationConfig, target: Target, manifest: dict[str, Any],
                   server_version_num: int, *, scratch: str | None = None) -> dict[str, Any]:
    """Restore into a scratch database and compare every table's row count with the manifest."""
    path = Path(manifest["file"])
    if not cfg.backup.verify_restore:
        log.warning("backup.verify_restore is false: %s is not test-restored", path)
        return {"skipped": True}
    pg_restore, _version = find_client("pg_restore", server_version_num)
    scratch = scratch or scratch_name()
    admin = target.connect()
    admin.autocommit = True
    problems: list[str] = []
    started = time.monotonic()
    try:
        _timeouts(admin, cfg)
        with admin.cursor() as cur:
            try:
                sqlfiles.run(cur, "backup/create_scratch_database.sql", {"database": scratch})
            except psycopg2.errors.InsufficientPrivilege as exc:
                raise BackupError(f"the restore check needs to create a scratch database, but {target.user} may "
                                  f"not (grant CREATEDB, or set backup.verify_restore: false): {exc}") from None
        try:
            proc = subprocess.run(restore_command(pg_restore, scratch, path), env=target.env(scratch),
                                  capture_output=True, text=True, timeout=6 * 3600)
            if proc.returncode != 0:
                problems.append(f"pg_restore into scratch database {scratch} failed ({proc.returncode}): "
                                f"{proc.stderr.strip()[-1500:]}")
            else:
                with target.connect(scratch) as sc:
                    restored = count_rows(sc)
                sc.close()
                expected = manifest["tables"]
                for name in sorted(set(expected) | set(restored)):
                    if name not in restored:
                        problems.append(f"table {name} is missing after the restore")
                    elif name not in expected:
                        problems.append(f"table {name} was restored but is not in the manifest")
                    elif restored[name] != expected[name]:
                        problems.append(f"table {name}: {restored[name]} rows restored, {expected[name]} dumped")
        finally:
            with admin.cursor() as cur:
                sqlfiles.run(cur, "backup/drop_scratch_database.sql", {"database": scratch})
    finally:
        admin.close()
    if problems:
        raise BackupError(f"backup {path} did not restore correctly:\n  - " + "\n  - ".join(problems))
    log.info("restore check of %s: %d tables, row counts match (%.1fs)", path, len(manifest["tables"]),
             time.monotonic() - started)
    return {"scratch_database": scratch, "tables_compared": len(manifest["tables"]),
            "rows_compared": sum(manifest["tables"].values()), "duration_s": round(time.monotonic() - started, 2)}


def _timeouts(conn, cfg: MigrationConfig) -> None:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "ddl/set_timeouts.sql", params={
            "lock_timeout": f"{int(cfg.ddl.lock_timeout.total_seconds() * 1000)}ms",
            "statement_timeout": f"{int(cfg.ddl.statement_timeout.total_seconds() * 1000)}ms"})


def manifest_entry(manifest: dict[str, Any], archive: dict[str, Any], restore: dict[str, Any],
                   verified_at: str | None = None) -> dict[str, Any]:
    """What the ledger's ``backup.manifest`` entry holds (the cutover checklist reads it)."""
    return {**manifest, "verified_at": verified_at or datetime.now(UTC).isoformat(), "archive_check": archive,
            "restore_check": restore}


def record_manifest_on(conn, cfg: MigrationConfig, manifest: dict[str, Any], archive: dict[str, Any],
                       restore: dict[str, Any], *, actor: str, context: dict[str, Any]) -> dict[str, Any]:
    """The verified manifest into the audit ledger, plus a passed ``preflight_backup`` gate result,
    in the caller's transaction (the caller commits: both or neither)."""
    entry = manifest_entry(manifest, archive, restore)
    # the recording run's ids win (a verify-only run records a dump an earlier run took)
    details = {**entry, **context, "dump_run_id": manifest.get("run_id")}
    audit_id, _at = control.append_audit(conn, cfg.control_schema, actor=actor, action="backup.manifest",
                                         target=manifest["file"], details=details,
                                         reason="pre-migration backup taken and verified")
    with conn.cursor() as cur:
        sqlfiles.run(cur, "control/gate_result_insert.sql", {"schema": cfg.control_schema}, gate_result(
            manifest, restore, verified_at=entry["verified_at"], context=context))
    return {"audit_id": audit_id, **entry}


def gate_result(manifest: dict[str, Any], restore: dict[str, Any], *, verified_at: str,
                context: dict[str, Any]) -> dict[str, Any]:
    """Bound values of the passed ``preflight_backup`` gate result."""
    figures = {"file": manifest["file"], "sha256": manifest["sha256"], "wal_lsn": manifest["wal_lsn"],
               "size_bytes": manifest["size_bytes"], "total_rows": manifest["total_rows"],
               "snapshot_taken_at": manifest["snapshot_taken_at"], "verified_at": verified_at}
    reason = ("backup restored into a scratch database with matching row counts" if not restore.get("skipped")
              else "backup archive verified (restore check disabled)")
    return {"gate": GATE, "status": "passed", "figures": json.dumps(figures, default=str), "reason": reason,
            "dag_id": context.get("dag_id"), "run_id": context.get("run_id")}


def record_manifest(cfg: MigrationConfig, target: Target, manifest: dict[str, Any], archive: dict[str, Any],
                    restore: dict[str, Any], *, actor: str, context: dict[str, Any]) -> dict[str, Any]:
    """:func:`record_manifest_on` on a new connection (creating the control schema if needed)."""
    conn = target.connect()
    try:
        conn.autocommit = True
        control.ensure_control_schema(conn, cfg.control_schema, cfg.ddl)
        conn.autocommit = False
        entry = record_manifest_on(conn, cfg, manifest, archive, restore, actor=actor, context=context)
        conn.commit()
    finally:
        conn.close()
    return entry


def record_failure(cfg: MigrationConfig, target: Target, check: str, error: BaseException, *,
                   context: dict[str, Any]) -> None:
    """Best effort: a failed check leaves a ``failed`` gate result (the failure callback pages)."""
    try:
        conn = target.connect()
        try:
            conn.autocommit = True
            if control.control_schema_exists(conn, cfg.control_schema):
                control.record_gate_result(conn, cfg.control_schema, gate=GATE, status="failed",
                                           figures={"check": check}, reason=str(error)[:2000],
                                           dag_id=context.get("dag_id"), run_id=context.get("run_id"))
        finally:
            conn.close()
    except Exception as exc:  # noqa: BLE001 - never mask the original failure
        log.error("could not record the failed %s check: %s", check, exc)
