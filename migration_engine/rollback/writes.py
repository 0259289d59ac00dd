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
   Then every old row in scope that no live new row links to (deleted in the new table after the
   cutover) is deleted or marked (``entities.<name>.rollback_deletes``), at most
   ``cutover.rollback_max_deletes``, its keys recorded (``removed_rows``) in the same commit.
5. ``verify``: both directions - no new row differs from or lacks its old row (digests equal), no
   old in-scope row lacks a live new row, the in-scope row counts and order-independent checksums
   of both sides are equal; every row of the pre-cutover backup still exists in the old tables
   unless this rollback deleted it; counts recorded. Fails closed.
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

import psycopg2

from migration_engine import control, sqlfiles
from migration_engine.config import MigrationConfig
from migration_engine.control import current_flags
from migration_engine.cutover.activity import wait_until_quiet
from migration_engine.cutover.checklist import backup_manifests, file_problem, for_legacy_database
from migration_engine.cutover.flags import write_cutover_point
from migration_engine.errors import Refused
from migration_engine.flag_step import SetFlag
from migration_engine.rollback.reverse import ReverseMapping
from migration_engine.rollback.sync import (
    OldScope,
    ReverseSync,
    TooManyDeletes,
    count_rows,
    find_orphans,
    key_ids,
    key_sequence,
    missing_keys,
    probe_reverse,
    removal_sql,
    remove_orphans,
    too_many,
)
from migration_engine.steps import Step, StepResult, StepRunner, get_state, put_state

log = logging.getLogger(__name__)

PHASE = "rollback3"
MARKER = "zero-downtime-migration: rollback scenario 3 side copy"
WRITES_TO_OLD = {"keep_old_sync": False, "write_to_new": False, "read_new_pct": 0}
ALERTS = {  # step -> (severity, title, text) of the message that tells the channel
    "maintenance_on": ("critical", "Rollback scenario 3: maintenance mode ON - writes refused",
                       "The old tables are being brought up to date from the new ones."),
    "maintenance_off": ("warning", "Rollback scenario 3 complete: writes are back on the old tables",
                        "maintenance_mode is off; reads and writes use the old tables again."),
}
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
        self.control = _connect(cfg, "legacy")  # the StepRunner's (autocommit): step_state + ledger
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
        for conn in (getattr(self, "legacy", None), getattr(self, "new", None), getattr(self, "control", None)):
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


def _preflight(s: Session, *, record: bool = True) -> dict[str, Any]:
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
        problems += probe_reverse(cfg, name, s.legacy, s.new)
        defaults = {c.new: str(c.default).lower() if isinstance(c.default, bool) else str(c.default)
                    for c in e.columns if c.default is not None}
        for col, inverse in rev.inverse.items():
            known = sorted(inverse) + ([defaults[col]] if col in defaults else [])  # the default goes back as NULL
            with s.new.cursor() as cur:
                sqlfiles.run(cur, "rollback/unmapped_values.sql",
                             {"table": (e.new_table.schema_name, e.new_table.table), "column": col},
                             {"known_values": known})
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
        key = key_ids(s.legacy, e, name)["_key"]  # refuses a key type the sync cannot compare
        s.legacy.rollback()
        info["old_key_type"] = key.type_name
        if info["created_after_cutover_unlinked"] and seq is None and key.kind != "uuid":
            problems.append(f"{info['created_after_cutover_unlinked']} rows of {e.new_table} have no old key and "
                            f"{e.old_table}.{e.key} ({key.type_name}) has no sequence to give them one (a uuid key "
                            "gets gen_random_uuid())")
        deletes = e.rollback_deletes
        info["deleted_rows_become"] = ("deleted" if deletes.action == "delete"
                                       else f"marked {deletes.column} = {deletes.value!r}")
        try:
            orphans = find_orphans(cfg, name, s.legacy, s.new, keep=cfg.consistency.max_reported_keys)
        except psycopg2.Error as exc:
            s.legacy.rollback()
            s.new.rollback()
            problems.append(f"{name}: cannot look for rows deleted in {e.new_table} since the cutover "
                            f"(entities.{name}.scope / rollback_deletes): {str(exc).strip()}")
        else:
            info["deleted_in_new"] = orphans.orphans
            info["deleted_in_new_examples"] = [str(k) for k in orphans.keys]
            if (problem := too_many(cfg, name, orphans.orphans)) is not None:
                problems.append(problem)
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
    if record:
        s.record("plan", plan, status=s.state["status"] if in_progress else "pending",
                 reason=f"rollback of the write cutover of {s.point.at:%Y-%m-%d %H:%M:%S} UTC planned")
    return plan


def preflight_summary(plan: dict[str, Any]) -> dict[str, Any]:
    """What the approval shows: the cutover, the backup, the side database, per-entity figures."""
    return {"cutover_at": plan["cutover_at"], "backup": plan["backup"]["file"],
            "backup_taken_at": plan["backup"]["snapshot_taken_at"], "side_database": plan["side_database"],
            "resuming": plan["resuming"], "already_done": plan["done"],
            "entities": {n: {k: v for k, v in e.items() if k != "old_key_sequence"}
                         for n, e in plan["entities"].items()}}


def _side_marker(conn, name: str) -> str | None:
    """The side database's comment ('' if it exists without one); None if it does not exist."""
    with conn.cursor() as cur:
        sqlfiles.run(cur, "rollback/side_database_marker.sql", params={"database_name": name})
        row = cur.fetchone()
    if not conn.autocommit:
        conn.rollback()
    return None if row is None else (row[1] or "")


# --- 2. maintenance on ---------------------------------------------------------------------
def _maintenance_on(s: Session) -> dict[str, Any]:
    cfg = s.cfg
    (flip,) = _flag_steps(s, "maintenance_on", {"maintenance_mode": True},
                          f"rollback scenario 3 ({s.rid}): refuse writes while the old tables are synced")
    change = flip.changed
    if change:
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


PAST = {"delete": "deleted", "mark": "marked"}
REMOVED = "removed_rows"  # umbrella details: {entity: [old keys deleted/marked by this rollback]}


def removed_keys(s: Session, name: str) -> list[Any]:
    return list((s.details.get(REMOVED) or {}).get(name, []))


def _remove_deleted(s: Session, name: str) -> dict[str, Any]:
    """Old rows whose new row was deleted after the cutover: deleted or marked, recorded in the same commit."""
    cfg, e = s.cfg, s.cfg.entities[name]
    limit = cfg.cutover.rollback_max_deletes
    orphans = find_orphans(cfg, name, s.legacy, s.new, keep=limit + 1)
    if (problem := too_many(cfg, name, orphans.orphans)) is not None:
        raise TooManyDeletes(problem)
    action = e.rollback_deletes.action

    def record(conn, removed: list[Any], rows: list[Any]) -> None:
        state = get_state(conn, s.schema, s.rid) or {"details": {}}
        done = dict(state["details"].get(REMOVED) or {})
        done[name] = sorted({*done.get(name, []), *removed}, key=str)
        control.append_audit(conn, s.schema, actor=s.actor, action=f"rollback3.rows_{PAST[action]}", target=s.rid,
                             details={**s.context, "entity": name, "table": str(e.old_table), "keys": removed,
                                      "old_rows": rows if action == "delete" else []},
                             reason=f"{len(removed)} rows of {e.old_table} {PAST[action]}: deleted in {e.new_table} "
                                    "after the cutover")
        put_state(conn, s.schema, step_id=s.rid, phase=PHASE, status=state.get("status") or "pending",
                  details={REMOVED: done})  # commits the removal, the ledger entry and the record together

    removed = remove_orphans(cfg, name, s.legacy, orphans.keys, record)
    s.state = get_state(s.legacy, s.schema, s.rid)
    s.legacy.rollback()
    return {"action": action, "found": orphans.orphans, "removed_now": len(removed),
            "removed_total": len(removed_keys(s, name)), "examples": [str(k) for k in removed[:20]]}


def _forward_sync(s: Session) -> dict[str, Any]:
    _require_maintenance(s, "forward_sync")
    out = {}
    for name in s.cfg.entities:
        stats = ReverseSync(s.cfg, name, s.legacy, s.new).run(apply=True)
        out[name] = {**stats.as_dict(), "deleted_in_new": _remove_deleted(s, name)}
    result = {"entities": out, "rows_written": sum(v["updated"] + v["inserted"] for v in out.values()),
              "rows_linked": sum(v["linked_now"] for v in out.values()),
              "rows_removed": sum(v["deleted_in_new"]["removed_total"] for v in out.values())}
    s.record("forward_sync", result, reason=f"{result['rows_written']} rows written back to the old tables "
             f"({result['rows_linked']} created after the cutover got an old key); {result['rows_removed']} "
             "old rows deleted or marked (deleted in the new tables)")
    return result


# --- 5. verify -----------------------------------------------------------------------------
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
            orphans = find_orphans(cfg, name, s.legacy, s.new, keep=cfg.consistency.max_reported_keys)
            removed = removed_keys(s, name)
            deleted = removed if e.rollback_deletes.action == "delete" else ()
            backup_rows, missing, examples, deleted_gone = missing_keys(cfg, name, side_conn, s.legacy,
                                                                        deleted=deleted)
            old_total = count_rows(s.legacy, e.old_table)
            new_total = count_rows(s.new, e.new_table)
            s.legacy.rollback()
            s.new.rollback()
            out[name] = {**stats.as_dict(), **orphans.as_dict(), "new_rows_counted": new_total,
                         "backup_rows": backup_rows, "backup_rows_missing": missing,
                         "backup_rows_missing_examples": [str(k) for k in examples],
                         "backup_rows_deleted_by_rollback": deleted_gone, "removed_by_rollback": len(removed),
                         "old_rows": old_total}
            if new_total != stats.new_rows:
                problems.append(f"{name}: {e.new_table} has {new_total} rows but the walk compared {stats.new_rows} "
                                "(is something still writing? maintenance mode should stop it)")
            if orphans.orphans:
                problems.append(f"{name}: {orphans.orphans} rows of {e.old_table} in scope have no live row in "
                                f"{e.new_table}: deleted there but not {PAST[e.rollback_deletes.action]} here, or "
                                f"never migrated (e.g. {orphans.keys[:5]})")
            if stats.scope_rows_new is None:
                out[name]["scope_check"] = "not comparable: the scope/mark column is not mapped"
            elif (stats.scope_rows_new, stats.scope_checksum_new) != (orphans.scope_rows_old,
                                                                       orphans.scope_checksum_old):
                problems.append(f"{name}: in-scope rows differ: {stats.scope_rows_new} in {e.new_table} (checksum "
                                f"{stats.scope_checksum_new}), {orphans.scope_rows_old} in {e.old_table} (checksum "
                                f"{orphans.scope_checksum_old})")
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
    s.record("verify", result, reason="old tables equal the new ones both ways (rows, counts, checksums); no "
             "pre-cutover row lost except those deleted in the new tables after the cutover")
    return result


# --- 6. writes back to old -----------------------------------------------------------------
def _writes_to_old(s: Session) -> dict[str, Any]:
    verified = s.details.get("verify")
    synced = s.details.get("forward_sync")
    if not verified or not synced or verified["at"] < synced["at"]:
        raise RollbackWritesRefused("writes_to_old: the forward sync has not been verified; not switching writes")
    _require_maintenance(s, "writes_to_old")
    reason = f"rollback scenario 3 ({s.rid}): writes and reads back on the old tables"
    results = _flag_steps(s, "writes_to_old", WRITES_TO_OLD, reason)
    changes = {flag: "; ".join(r.notes) if r.changed else "unchanged"
               for flag, r in zip(WRITES_TO_OLD, results, strict=True)}
    time.sleep(s.cfg.cutover.flag_propagation.total_seconds())  # every instance sees it before writes resume
    result = {"flags": changes}
    s.record("writes_to_old", result, status="applied", reason=reason)
    return result


# --- 7. maintenance off --------------------------------------------------------------------
def _maintenance_off(s: Session) -> dict[str, Any]:
    flags = current_flags(s.legacy, s.schema)
    if flags.get("write_to_new") or not s.details.get("writes_to_old"):
        raise RollbackWritesRefused("maintenance_off: writes are not back on the old tables yet; leaving maintenance "
                                    "mode on")
    (flip,) = _flag_steps(s, "maintenance_off", {"maintenance_mode": False},
                          f"rollback scenario 3 ({s.rid}) complete: the application may write again")
    result = {"maintenance_mode": "turned off" if flip.changed else "already off",
              "side_database": s.plan["side_database"], "cutover_at": s.plan["cutover_at"]}
    s.record("maintenance_off", result, status="verified", reason="rollback scenario 3 completed")
    return result



# --- the steps -----------------------------------------------------------------------------
# Every action of scenario 3 is a Step run by StepRunner on the Session's control connection: its
# run state in step_state (``<rollback id>.<action>``, with the flag values found before), an audit
# entry per action, a plan for the dry run. The umbrella row ``<rollback id>`` keeps each action's
# result (Session.record), which later actions and the resumed pre-flight read.
def _runner(s: Session) -> StepRunner:
    return StepRunner(s.control, schema=s.schema, ddl=s.cfg.ddl, actor=s.actor, context=s.context)


def flag_steps(s: Session, action: str, values: dict[str, Any], reason: str) -> list[SetFlag]:
    return [SetFlag(s.schema, flag, value, phase=PHASE, reason=reason, step_id=f"{s.rid}.{action}.{flag}")
            for flag, value in values.items()]


def _flag_steps(s: Session, action: str, values: dict[str, Any], reason: str) -> list[StepResult]:
    """Flip flags as SetFlag steps (idempotent: a re-run that finds them set writes nothing)."""
    steps = flag_steps(s, action, values, reason)
    runner = _runner(s)
    results = runner.apply(steps)
    runner.verify(steps)
    return results


class SessionStep(Step):
    """restore_backup / forward_sync / verify: the body runs as one recorded action.

    ``apply`` records the exact statements and commands (``describe``: rendered SQL, pg_restore
    command lines, rows that differ now) and, unless planning, runs the body, which checks what is
    already done (resumable). ``problems`` checks that the action's result is recorded. No revert:
    undoing a restore or a sync by hand is a decision, not a step.
    """

    phase = PHASE

    def __init__(self, s: Session, name: str, title: str, body, describe):
        self.s, self.name, self.title = s, name, title
        self.step_id = f"{s.rid}.{name}"
        self.body, self.describe = body, describe
        self.result: dict[str, Any] = {}

    def before_state(self, ex) -> dict[str, Any]:
        return {}

    def apply(self, ex) -> list[str]:
        lines = self.describe(self.s, ex)
        if not lines:
            self.result = {} if ex.planning else self.body(self.s)
            return ["read-only"]
        ex.action("\n".join(lines), lambda: self.result.update(self.body(self.s)))
        return [self.result.get("skipped") or f"{self.name} done"] if not ex.planning else [f"{self.name} planned"]

    def problems(self, ex) -> list[str]:
        state = get_state(self.s.control, self.s.schema, self.s.rid) or {"details": {}}
        return [] if state["details"].get(self.name) else [f"{self.name}: no result recorded"]


def _describe_restore(s: Session, ex) -> list[str]:
    plan = s.plan
    backup, side = plan["backup"], plan["side_database"]
    lines = []
    if _side_marker(s.legacy, side) is not None:
        lines.append(ex.render("rollback/drop_side_database.sql", {"database": side}) + ";")
    lines.append(ex.render("rollback/create_side_database.sql", {"database": side}) + ";")
    lines.append(ex.render("rollback/mark_side_database.sql",
                           params={"database_name": side, "marker": f"{MARKER}: {backup['file']} "
                                                                    f"sha256={backup['sha256']}"}) + ";")
    for e in s.cfg.entities.values():
        lines.append(" ".join([str(plan["pg_restore"]), "--no-owner", "--no-acl", "--exit-on-error", f"--dbname={side}",
                               f"--schema={e.old_table.schema_name}", f"--table={e.old_table.table}",
                               str(backup["file"])]))
    return lines


def _describe_sync(s: Session, ex) -> list[str]:
    lines = []
    for name, e in s.cfg.entities.items():
        if ex.planning:
            stats = ReverseSync(s.cfg, name, s.legacy, s.new).run(apply=False)
            s.legacy.rollback()
            s.new.rollback()
            lines.append(f"-- {name}: {stats.differences} rows of {e.new_table} differ from {e.old_table} now: "
                         "one rollback/upsert_old_row.sql each (new rows first get an old key: "
                         "rollback/link_legacy_id.sql)")
            orphans = find_orphans(s.cfg, name, s.legacy, s.new, keep=s.cfg.cutover.rollback_max_deletes + 1)
            sqlfile, idents = removal_sql(s.cfg, name, s.legacy)
            lines.append(f"-- {name}: {orphans.orphans} rows of {e.old_table} in scope have no live row in "
                         f"{e.new_table} (deleted there after the cutover): "
                         + ("more than cutover.rollback_max_deletes - the sync would refuse"
                            if too_many(s.cfg, name, orphans.orphans) else
                            ("nothing to remove" if not orphans.keys else "")))
            if orphans.keys and not too_many(s.cfg, name, orphans.orphans):
                lines.append(ex.render(sqlfile, idents, {**OldScope(e).params(), "keys": orphans.keys}) + ";")
        else:
            lines.append(f"-- {name}: upsert every row of {e.new_table} that differs from {e.old_table}")
            lines.append(f"-- {name}: {e.rollback_deletes.action} the rows of {e.old_table} in scope with no live row "
                         f"in {e.new_table} ({removal_sql(s.cfg, name)[0]})")
    return lines


def _describe_verify(s: Session, ex) -> list[str]:
    return []  # read-only: a second walk of both tables and the backup keys


SESSION_STEPS = {
    "restore_backup": ("Restore the pre-cutover backup into the side database", _restore_backup, _describe_restore),
    "forward_sync": ("Write every row changed since the cutover back into the old tables", _forward_sync,
                     _describe_sync),
    "verify": ("Verify old = new and no pre-cutover row lost", _verify, _describe_verify),
}


def run(name: str, cfg: MigrationConfig, *, actor: str, context: dict) -> dict[str, Any]:
    """Run one action of scenario 3 (as its step); a failure is recorded and maintenance stays on."""
    bodies = {"maintenance_on": _maintenance_on, "writes_to_old": _writes_to_old, "maintenance_off": _maintenance_off}

    def go(s: Session) -> dict[str, Any]:
        if name in bodies:
            return bodies[name](s)
        title, body, describe = SESSION_STEPS[name]
        step = SessionStep(s, name, title, body, describe)
        runner = _runner(s)
        runner.apply([step])
        runner.verify([step])
        return step.result

    return _run_step(cfg, name, go, actor=actor, context=context)


def dry_run_plan(cfg: MigrationConfig) -> dict[str, Any]:
    """Every action's plan, read-only: the pre-flight is evaluated but not recorded, no flag or state changes."""
    s = Session(cfg, actor="dry-run", context={}, need_plan=False)
    try:
        plan = _preflight(s, record=False)
        s.state = {**(s.state or {"status": "pending"}), "details": {**s.details, "plan": plan}}
        steps: list[Step] = flag_steps(s, "maintenance_on", {"maintenance_mode": True}, "dry run")
        steps += [SessionStep(s, n, *SESSION_STEPS[n]) for n in ("restore_backup", "forward_sync", "verify")]
        steps += flag_steps(s, "writes_to_old", WRITES_TO_OLD, "dry run")
        steps += flag_steps(s, "maintenance_off", {"maintenance_mode": False}, "dry run")
        results = _runner(s).plan(steps)
        for r in results:
            log.info("DRY RUN %s:\n%s", r.step_id, "\n".join(r.executed) or "(nothing to do)")
        return {"dry_run": True, "preflight": preflight_summary(plan), "steps": [r.as_dict() for r in results]}
    finally:
        s.close()
