"""Rollback scenario 3 (seed "After Write Cutover", critical): writes back to the old tables.

The seed restores the pre-cutover dump into ``breederhq_temp``, replays WAL to the cutover point
and syncs "new records created after cutover" forward. We keep the restore - into a *side*
database - but do not swap databases: the legacy database holds other tables the application kept
writing (tenants, invoices...), which a swap would lose. The live old tables are brought up to date
in place instead, and the side copy is the independent reference that proves nothing that
existed before the cutover was lost. Steps (one task each, every one audited, state in
``step_state`` under ``rollback3.cutover-<ledger id of the write cutover>``, so a failed run is
resumed by the next one - each step checks what is already done):

1. ``preflight`` (read-only): a write cutover to undo (or a half-done rollback of it); the latest
   verified backup taken *before* the cutover (its file intact); old tables present; the reverse
   mapping valid and every value in the new tables mappable; ``pg_restore`` available.
2. approval (gate ``rollback_scenario_3``), then ``maintenance_on``: ``maintenance_mode = true``,
   wait for the application's flag cache, then for the old *and* new tables to stop receiving
   writes (pg_stat_user_tables).
3. ``restore_backup``: the backup's archive re-verified (SHA-256, ``pg_restore --list``), the old
   tables restored from it into the side database (``cutover.rollback_side_database``, default
   ``<legacy db>_pre_cutover``; only a database carrying our marker is ever replaced), row counts
   checked against the manifest.
4. ``forward_sync``: :class:`~migration_engine.rollback.sync.ReverseSync` per entity - every row
   created or changed in the new tables is written back (reverse mapping: ``active -> ACTIVE``,
   provider -> tenant); rows created after the cutover get a new old key, linked in the new table.
5. ``verify``: a second full walk finds no difference (digests of both sides equal); every row of
   the pre-cutover backup still exists in the old tables; counts recorded. Fails closed.
6. ``writes_to_old``: ``keep_old_sync = false``, ``write_to_new = false``, ``read_new_pct = 0``.
7. ``maintenance_off``: ``maintenance_mode = false``; the rollback is recorded as completed.

If a step fails, maintenance mode stays on (the application refuses writes rather than writing
to a half-synced old table); fix the cause and re-run the DAG - it resumes.
"""

from __future__ import annotations

import logging
import subprocess
import time
from datetime import UTC, datetime
from typing import Any

from migration_engine import control, sqlfiles
from migration_engine.config import MigrationConfig
from migration_engine.control import current_flags, ensure_flag
from migration_engine.cutover.activity import wait_until_quiet
from migration_engine.cutover.checklist import backup_manifests, file_problem, for_legacy_database
from migration_engine.cutover.flags import write_cutover_point
from migration_engine.errors import Refused
from migration_engine.rollback.reverse import ReverseMapping
from migration_engine.rollback.sync import ReverseSync, count_rows, key_sequence, missing_keys
from migration_engine.steps import get_state, put_state

log = logging.getLogger(__name__)

PHASE = "rollback3"
MARKER = "zero-downtime-migration: rollback scenario 3 side copy"
ACTION_STEPS = ("maintenance_on", "restore_backup", "forward_sync", "verify", "writes_to_old", "maintenance_off")


class RollbackWritesRefused(Refused):
    """Scenario 3 cannot run (or continue) now; the message says why and what to do."""


def _connect(cfg: MigrationConfig, side: str):
    from migration_engine import db

    conn = db.connect(cfg.conn_id(side), application_name="migration-rollback-writes")
    return conn


def rollback_id(audit_id: int) -> str:
    return f"rollback3.cutover-{audit_id}"


def side_database_name(cfg: MigrationConfig, legacy_db: str) -> str:
    return cfg.cutover.rollback_side_database or f"{legacy_db}_pre_cutover"[:63]


class Session:
    """Connections and the run state of the rollback in progress."""

    def __init__(self, cfg: MigrationConfig, *, actor: str, context: dict, need_plan: bool = True):
        self.cfg, self.actor, self.context = cfg, actor, dict(context)
        self.schema = cfg.control_schema
        self.legacy = _connect(cfg, "legacy")
        self.new = _connect(cfg, "new")
        point = write_cutover_point(self.legacy, self.schema)
        if point is None:
            self.close()
            raise RollbackWritesRefused("the audit ledger has no write cutover (write_to_new was never switched on): "
                                        "nothing to roll back")
        self.point = point
        self.rid = rollback_id(point.audit_id)
        self.state = get_state(self.legacy, self.schema, self.rid)
        self.legacy.rollback()
        if need_plan and (self.state is None or "plan" not in self.state["details"]):
            self.close()
            raise RollbackWritesRefused(f"{self.rid}: no pre-flight plan recorded; run the preflight task first")

    @property
    def details(self) -> dict[str, Any]:
        return (self.state or {}).get("details", {})

    @property
    def plan(self) -> dict[str, Any]:
        return self.details["plan"]

    def record(self, step: str, result: dict[str, Any], *, status: str = "pending", reason: str = "") -> None:
        """Step result into step_state (merged) and the audit ledger, committed."""
        self.legacy.autocommit = False
        put_state(self.legacy, self.schema, step_id=self.rid, phase=PHASE, status=status,
                  details={step: {**result, "at": datetime.now(UTC).isoformat()}})
        control.audit(self.legacy, self.schema, actor=self.actor, action=f"rollback3.{step}", target=self.rid,
                      details={**self.context, **result}, reason=reason or step)
        self.state = get_state(self.legacy, self.schema, self.rid)
        self.legacy.rollback()

    def fail(self, step: str, error: BaseException) -> None:
        try:
            self.legacy.rollback()
            put_state(self.legacy, self.schema, step_id=self.rid, phase=PHASE, status="failed",
                      details={"last_error": {"step": step, "error": f"{type(error).__name__}: {error}",
                                              "at": datetime.now(UTC).isoformat()}})
            control.audit(self.legacy, self.schema, actor=self.actor, action="rollback3.step_failed", target=self.rid,
                          details={**self.context, "step": step, "error": str(error)}, reason=str(error)[:500])
        except Exception as exc:  # noqa: BLE001 - never mask the original failure
            log.error("could not record the failed step %s: %s", step, exc)

    def close(self) -> None:
        for conn in (getattr(self, "legacy", None), getattr(self, "new", None)):
            if conn is not None and not conn.closed:
                conn.close()


def _run_step(cfg: MigrationConfig, step: str, fn, *, actor: str, context: dict, need_plan: bool = True):
    s = Session(cfg, actor=actor, context=context, need_plan=need_plan)
    try:
        return fn(s)
    except Exception as exc:
        s.fail(step, exc)
        raise
    finally:
        s.close()


# --- 1. preflight --------------------------------------------------------------------------
def preflight(cfg: MigrationConfig, *, actor: str, context: dict) -> dict[str, Any]:
    return _run_step(cfg, "preflight", _preflight, actor=actor, context=context, need_plan=False)


def _preflight(s: Session) -> dict[str, Any]:
    from migration_engine.backup import find_client
    from migration_engine.ddl import DdlExecutor

    cfg = s.cfg
    flags = current_flags(s.legacy, s.schema)
    # In progress = a run got past the approval (a failed pre-flight alone does not count).
    in_progress = (s.state is not None and s.state["status"] != "verified"
                   and any(step in s.details for step in ACTION_STEPS))
    if not flags.get("write_to_new") and not in_progress:
        raise RollbackWritesRefused(
            "writes are on the old tables already (write_to_new = false) and no rollback of the last write cutover "
            f"(ledger #{s.point.audit_id}) is in progress: nothing to roll back"
            + (" - it was completed" if s.state and s.state["status"] == "verified" else ""))
    problems: list[str] = []
    manifests = [m for m in backup_manifests(s.legacy, s.schema, before=s.point.at) if for_legacy_database(m, cfg)]
    backup = manifests[0] if manifests else None
    if backup is None:
        problems.append(f"no verified backup taken before the write cutover ({s.point.at:%Y-%m-%d %H:%M:%S} UTC); "
                        "without it nothing proves the rollback lost no pre-cutover row")
    elif (problem := file_problem(backup)) is not None:
        problems.append(f"the pre-cutover backup is unusable: {problem}")
    ex_old = DdlExecutor(s.legacy, cfg.ddl, planning=True)
    ex_new = DdlExecutor(s.new, cfg.ddl, planning=True)
    entities: dict[str, Any] = {}
    for name, e in cfg.entities.items():
        info: dict[str, Any] = {"old_table": str(e.old_table), "new_table": str(e.new_table)}
        entities[name] = info
        if not ex_old.relation_exists(e.old_table):
            archived = e.old_table.with_table(e.old_table.table + cfg.cleanup.archive_suffix)
            hint = (f" (it was archived as {archived}: rename it back first - phase 6 archive revert)"
                    if ex_old.relation_exists(archived) else "")
            problems.append(f"old table {e.old_table} does not exist{hint}")
            continue
        if not ex_new.relation_exists(e.new_table):
            problems.append(f"new table {e.new_table} does not exist")
            continue
        try:
            rev = ReverseMapping(e, name)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        for col, inverse in rev.inverse.items():
            with s.new.cursor() as cur:
                sqlfiles.run(cur, "rollback/unmapped_values.sql",
                             {"table": (e.new_table.schema_name, e.new_table.table), "column": col},
                             {"known_values": sorted(inverse)})
                unknown = [r[0] for r in cur.fetchall()]
            s.new.rollback()
            if unknown:
                problems.append(f"{e.new_table}.{col} holds values the reverse mapping does not know: {unknown}; "
                                f"add them to entities.{name}.columns ({col}) map")
        with s.new.cursor() as cur:
            sqlfiles.run(cur, "rollback/unlinked_count.sql", {"table": (e.new_table.schema_name, e.new_table.table),
                                                              "legacy_id": e.legacy_id_column})
            info["created_after_cutover_unlinked"] = int(cur.fetchone()[0])
        s.new.rollback()
        info["new_rows"] = count_rows(s.new, e.new_table)
        info["old_rows"] = count_rows(s.legacy, e.old_table)
        s.new.rollback()
        s.legacy.rollback()
        seq = key_sequence(s.legacy, e.old_table, e.key)
        info["old_key_sequence"] = seq
        if info["created_after_cutover_unlinked"] and seq is None:
            problems.append(f"{info['created_after_cutover_unlinked']} rows of {e.new_table} have no old key and "
                            f"{e.old_table}.{e.key} has no sequence to give them one")
        if backup is not None and str(e.old_table) not in (backup.get("tables") or {}):
            problems.append(f"the pre-cutover backup {backup.get('file')} does not contain {e.old_table}")
    pg_restore = None
    try:
        with s.legacy.cursor() as cur:
            sqlfiles.run(cur, "backup/database_info.sql")
            legacy_db, _size, version_num, _version = cur.fetchone()
        s.legacy.rollback()
        pg_restore, _ = find_client("pg_restore", version_num)
    except Exception as exc:  # noqa: BLE001 - reported with the other problems
        legacy_db = s.legacy.info.dbname
        problems.append(str(exc))
    side = side_database_name(cfg, legacy_db)
    existing = _side_marker(s.legacy, side)
    restored = s.details.get("restore_backup") or {}
    if existing is not None and not (existing or "").startswith(MARKER):
        problems.append(f"database {side} exists and is not a side copy made by this DAG; set "
                        "cutover.rollback_side_database to a free name")
    if problems:
        raise RollbackWritesRefused("rollback scenario 3 pre-flight failed:\n  - " + "\n  - ".join(problems))
    plan = {
        "rollback_id": s.rid, "cutover_audit_id": s.point.audit_id, "cutover_at": s.point.at.isoformat(),
        "flags_at_start": flags, "side_database": side, "pg_restore": pg_restore, "entities": entities,
        "backup": {k: backup.get(k) for k in ("audit_id", "file", "size_bytes", "sha256", "snapshot_taken_at",
                                               "wal_lsn", "tables", "database", "conn_id")},
        "resuming": in_progress, "done": sorted(k for k in s.details if k not in ("plan", "last_error")),
        "side_database_restored_before": bool(restored),
    }
    s.record("plan", plan, status=s.state["status"] if in_progress else "pending",
             reason=f"rollback of the write cutover of {s.point.at:%Y-%m-%d %H:%M:%S} UTC planned")
    return plan


def _side_marker(conn, name: str) -> str | None:
    """The side database's comment ('' if it exists without one); None if it does not exist."""
    with conn.cursor() as cur:
        sqlfiles.run(cur, "rollback/side_database_marker.sql", params={"database_name": name})
        row = cur.fetchone()
    if not conn.autocommit:
        conn.rollback()
    return None if row is None else (row[1] or "")


# --- 2. maintenance on ---------------------------------------------------------------------
def maintenance_on(cfg: MigrationConfig, *, actor: str, context: dict) -> dict[str, Any]:
    return _run_step(cfg, "maintenance_on", _maintenance_on, actor=actor, context=context)


def _maintenance_on(s: Session) -> dict[str, Any]:
    cfg = s.cfg
    change = ensure_flag(s.legacy, s.schema, "maintenance_mode", True, actor=s.actor, context=s.context,
                         reason=f"rollback scenario 3 ({s.rid}): refuse writes while the old tables are synced")
    if change is not None:
        time.sleep(cfg.cutover.flag_propagation.total_seconds())
    quiet_new = wait_until_quiet(s.new, [e.new_table for e in cfg.entities.values()],
                                 quiet=cfg.cleanup.quiet_period, timeout=cfg.cutover.quiesce_timeout)
    quiet_old = wait_until_quiet(s.legacy, [e.old_table for e in cfg.entities.values()],
                                 quiet=cfg.cleanup.quiet_period, timeout=cfg.cutover.quiesce_timeout)
    result = {"maintenance_mode": "turned on" if change else "already on", "new_tables": quiet_new,
              "old_tables": quiet_old}
    s.record("maintenance_on", result, reason="maintenance mode on; no writes on the old or new tables")
    return result


# --- 3. restore ----------------------------------------------------------------------------
def restore_backup(cfg: MigrationConfig, *, actor: str, context: dict) -> dict[str, Any]:
    return _run_step(cfg, "restore_backup", _restore_backup, actor=actor, context=context)


def _side_counts(s: Session, target, side: str) -> dict[str, int]:
    conn = target.connect(side)
    try:
        return {str(e.old_table): count_rows(conn, e.old_table) for e in s.cfg.entities.values()}
    finally:
        conn.close()


def _restore_backup(s: Session) -> dict[str, Any]:
    from migration_engine.backup import Target, verify_archive

    cfg, plan = s.cfg, s.plan
    backup, side = plan["backup"], plan["side_database"]
    expected = {str(e.old_table): int(backup["tables"][str(e.old_table)]) for e in cfg.entities.values()}
    marker = f"{MARKER}: {backup['file']} sha256={backup['sha256']}"
    target = Target.from_conn_id(cfg.connections.legacy)
    done = s.details.get("restore_backup")
    if done and _side_marker(s.legacy, side) == marker:
        try:
            if _side_counts(s, target, side) == expected:
                log.info("side database %s already holds the restored backup: skipping", side)
                return {**done, "skipped": "already restored"}
        except Exception as exc:  # noqa: BLE001 - restore again below
            log.warning("side database %s is not usable (%s): restoring again", side, exc)
    with s.legacy.cursor() as cur:
        sqlfiles.run(cur, "backup/database_info.sql")
        version_num = cur.fetchone()[2]
    s.legacy.rollback()
    archive = verify_archive({**backup, "tables": backup["tables"]}, version_num)
    existing = _side_marker(s.legacy, side)
    if existing is not None and not existing.startswith(MARKER):
        raise RollbackWritesRefused(f"database {side} exists and is not our side copy; not touching it")
    s.legacy.autocommit = True
    try:
        with s.legacy.cursor() as cur:
            if existing is not None:
                sqlfiles.run(cur, "rollback/drop_side_database.sql", {"database": side})
            sqlfiles.run(cur, "rollback/create_side_database.sql", {"database": side})
            s.legacy.autocommit = False
            sqlfiles.run(cur, "rollback/mark_side_database.sql", params={"database_name": side, "marker": marker})
        s.legacy.commit()
    finally:
        s.legacy.autocommit = False
    started = time.monotonic()
    for e in cfg.entities.values():
        cmd = [plan["pg_restore"], "--no-owner", "--no-acl", "--exit-on-error", f"--dbname={side}",
               f"--schema={e.old_table.schema_name}", f"--table={e.old_table.table}", backup["file"]]
        proc = subprocess.run(cmd, env=target.env(side), capture_output=True, text=True, timeout=6 * 3600)
        if proc.returncode != 0:
            raise RollbackWritesRefused(f"pg_restore of {e.old_table} into {side} failed ({proc.returncode}): "
                                        f"{proc.stderr.strip()[-1500:]}")
    counts = _side_counts(s, target, side)
    if counts != expected:
        raise RollbackWritesRefused(f"the side copy in {side} does not match the backup manifest: restored {counts}, "
                                    f"manifest {expected}")
    result = {"side_database": side, "backup_file": backup["file"], "sha256": backup["sha256"],
              "archive_check": archive, "rows": counts, "duration_s": round(time.monotonic() - started, 2)}
    s.record("restore_backup", result, reason=f"pre-cutover backup restored into {side}; row counts match")
    return result


# --- 4. forward sync -----------------------------------------------------------------------
def _require_maintenance(s: Session, step: str) -> None:
    if not current_flags(s.legacy, s.schema).get("maintenance_mode"):
        raise RollbackWritesRefused(f"{step}: maintenance_mode is off - syncing while the application writes could "
                                    "miss rows; run maintenance_on first")


def forward_sync(cfg: MigrationConfig, *, actor: str, context: dict) -> dict[str, Any]:
    return _run_step(cfg, "forward_sync", _forward_sync, actor=actor, context=context)


def _forward_sync(s: Session) -> dict[str, Any]:
    _require_maintenance(s, "forward_sync")
    out = {}
    for name in s.cfg.entities:
        stats = ReverseSync(s.cfg, name, s.legacy, s.new).run(apply=True)
        out[name] = stats.as_dict()
    result = {"entities": out, "rows_written": sum(v["updated"] + v["inserted"] for v in out.values()),
              "rows_linked": sum(v["linked_now"] for v in out.values())}
    s.record("forward_sync", result, reason=f"{result['rows_written']} rows written back to the old tables "
             f"({result['rows_linked']} created after the cutover got an old key)")
    return result


# --- 5. verify -----------------------------------------------------------------------------
def verify(cfg: MigrationConfig, *, actor: str, context: dict) -> dict[str, Any]:
    return _run_step(cfg, "verify", _verify, actor=actor, context=context)


def _verify(s: Session) -> dict[str, Any]:
    from migration_engine.backup import Target

    _require_maintenance(s, "verify")
    cfg, plan = s.cfg, s.plan
    if not s.details.get("forward_sync"):
        raise RollbackWritesRefused("verify: the forward sync has not run for this rollback")
    side = plan["side_database"]
    target = Target.from_conn_id(cfg.connections.legacy)
    side_conn = target.connect(side)
    problems: list[str] = []
    out: dict[str, Any] = {}
    try:
        for name, e in cfg.entities.items():
            stats = ReverseSync(cfg, name, s.legacy, s.new).run(apply=False)
            backup_rows, missing, examples = missing_keys(cfg, name, side_conn, s.legacy)
            old_total = count_rows(s.legacy, e.old_table)
            s.legacy.rollback()
            out[name] = {**stats.as_dict(), "backup_rows": backup_rows, "backup_rows_missing": missing,
                         "backup_rows_missing_examples": [str(k) for k in examples], "old_rows": old_total}
            if stats.differences:
                problems.append(f"{name}: {stats.differences} new-table rows are not in the old table as they are in "
                                f"the new one (examples: {stats.examples[:5]})")
            if stats.digest_new != stats.digest_old:
                problems.append(f"{name}: content digests differ (new {stats.digest_new}, old {stats.digest_old})")
            if missing:
                problems.append(f"{name}: {missing} rows of the pre-cutover backup are missing from {e.old_table} "
                                f"(e.g. {examples[:5]}); restore them from the side database {side} or explain them")
    finally:
        side_conn.close()
    if problems:
        raise RollbackWritesRefused("rollback verification failed (maintenance mode stays on):\n  - "
                                    + "\n  - ".join(problems))
    result = {"entities": out}
    s.record("verify", result, reason="every new-table row is in the old tables; no pre-cutover row lost")
    return result


# --- 6. writes back to old -----------------------------------------------------------------
def writes_to_old(cfg: MigrationConfig, *, actor: str, context: dict) -> dict[str, Any]:
    return _run_step(cfg, "writes_to_old", _writes_to_old, actor=actor, context=context)


def _writes_to_old(s: Session) -> dict[str, Any]:
    verified = s.details.get("verify")
    synced = s.details.get("forward_sync")
    if not verified or not synced or verified["at"] < synced["at"]:
        raise RollbackWritesRefused("writes_to_old: the forward sync has not been verified; not switching writes")
    _require_maintenance(s, "writes_to_old")
    reason = f"rollback scenario 3 ({s.rid}): writes and reads back on the old tables"
    changes = {}
    for flag, value in (("keep_old_sync", False), ("write_to_new", False), ("read_new_pct", 0)):
        change = ensure_flag(s.legacy, s.schema, flag, value, actor=s.actor, reason=reason, context=s.context)
        changes[flag] = f"{change.old_value} -> {value}" if change else "unchanged"
    time.sleep(s.cfg.cutover.flag_propagation.total_seconds())  # every instance sees it before writes resume
    result = {"flags": changes}
    s.record("writes_to_old", result, status="applied", reason=reason)
    return result


# --- 7. maintenance off --------------------------------------------------------------------
def maintenance_off(cfg: MigrationConfig, *, actor: str, context: dict) -> dict[str, Any]:
    return _run_step(cfg, "maintenance_off", _maintenance_off, actor=actor, context=context)


def _maintenance_off(s: Session) -> dict[str, Any]:
    flags = current_flags(s.legacy, s.schema)
    if flags.get("write_to_new") or not s.details.get("writes_to_old"):
        raise RollbackWritesRefused("maintenance_off: writes are not back on the old tables yet; leaving maintenance "
                                    "mode on")
    change = ensure_flag(s.legacy, s.schema, "maintenance_mode", False, actor=s.actor, context=s.context,
                         reason=f"rollback scenario 3 ({s.rid}) complete: the application may write again")
    result = {"maintenance_mode": "turned off" if change else "already off",
              "side_database": s.plan["side_database"], "cutover_at": s.plan["cutover_at"]}
    s.record("maintenance_off", result, status="verified", reason="rollback scenario 3 completed")
    return result

