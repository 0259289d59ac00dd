"""Phase 6 (seed "Cleanup"): stop old-path writes, archive the old tables, drop them much later.

Order and safety, as an operator would run it by hand:

1. **Gate** - writes moved to the new tables (``write_to_new``) at least
   ``cleanup.min_age_after_write_cutover`` ago (seed: wait 1 week). Read from the audit ledger.
2. **Stop old writes** - ``dual_write_enabled`` and ``keep_old_sync`` off (audited), then the old
   tables must show no writes in ``pg_stat_user_tables`` for ``cleanup.quiet_period``: renaming a
   table something still writes would turn into application errors.
3. **Archive** - ``ALTER TABLE ... RENAME TO <table><archive_suffix>`` and ``COMMENT ON TABLE`` with
   the archive date and the safe-drop date (archive + ``cleanup.archive_retention``, seed 90 days),
   in one transaction, with lock_timeout and retry. Idempotent: an archived table is left alone
   (a re-run changes nothing and writes nothing to the ledger). The ledger gets one
   ``cleanup.archived`` record per table with the dates and the table's write counter at archive.
4. **Drop** (a separate run, ``action=drop``) - refused before the safe-drop date (the later of
   ledger and comment), refused if the archived table's write counter moved since archiving or the
   statistics were reset since (cannot prove "no writes"), then a human approval, then one
   ``DROP TABLE`` of all archived tables (no CASCADE) and the configured legacy columns.

Every step is a :class:`migration_engine.steps.Step` (plan / apply / verify / revert) run through
``StepRunner`` (state in ``step_state``, audit entries); archiving can be reverted (renamed back),
dropping cannot.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2.errors
from psycopg2 import sql

from migration_engine import control, preflight, sqlfiles
from migration_engine.config import DropColumn, MigrationConfig, TableRef
from migration_engine.cutover.activity import qualified, table_activity, wait_until_quiet
from migration_engine.cutover.flags import write_cutover_point
from migration_engine.ddl import DdlError, DdlExecutor
from migration_engine.errors import Refused
from migration_engine.flag_step import SetFlag
from migration_engine.gates import GateResult
from migration_engine.gates.window import fmt_duration
from migration_engine.steps import RevertRefused, Step, StepRunner

log = logging.getLogger(__name__)

PHASE = "phase6"
ARCHIVED_ACTION = "cleanup.archived"
_TS = "%Y-%m-%dT%H:%M:%SZ"
_COMMENT_RE = re.compile(r"Archived (\S+) by migration_phase6_cleanup\. Safe to drop after (\S+)\.")


class CleanupRefused(Refused):
    """A cleanup action is not allowed now; the message says why and from when."""


# --- naming and the archive comment --------------------------------------------------------
def archived_ref(cfg: MigrationConfig, table: TableRef) -> TableRef:
    name = table.table + cfg.cleanup.archive_suffix
    if len(name) > 63:
        raise CleanupRefused(f"archive name {name!r} for {table} is longer than 63 characters; "
                             "shorten cleanup.archive_suffix")
    return table.with_table(name)


def archive_comment(archived_at: datetime, safe_drop_at: datetime) -> str:
    return (f"Archived {archived_at.astimezone(UTC):{_TS}} by migration_phase6_cleanup. "
            f"Safe to drop after {safe_drop_at.astimezone(UTC):{_TS}}.")


def parse_archive_comment(text: str | None) -> tuple[datetime, datetime] | None:
    m = _COMMENT_RE.search(text or "")
    if not m:
        return None
    try:
        return (datetime.strptime(m.group(1), _TS).replace(tzinfo=UTC),
                datetime.strptime(m.group(2), _TS).replace(tzinfo=UTC))
    except ValueError:
        return None


def _table_comment(ex: DdlExecutor, table: TableRef) -> str | None:
    return ex.query("cleanup/table_comment.sql", params={"qualified_name": qualified(table)})[0][0]


# --- steps ---------------------------------------------------------------------------------
class ArchiveTableStep(Step):
    """Rename one old table to its archive name, with the dated comment (seed 6.2)."""

    phase = PHASE

    def __init__(self, cfg: MigrationConfig, table: TableRef, archived_at: datetime):
        self.schema = cfg.control_schema
        self.table = table
        self.archived = archived_ref(cfg, table)
        self.archived_at = archived_at.astimezone(UTC).replace(microsecond=0)
        self.safe_drop_at = self.archived_at + cfg.cleanup.archive_retention
        self.step_id = f"phase6.archive.{table}"
        self.title = f"Archive {table} as {self.archived}"

    def before_state(self, ex: DdlExecutor) -> dict[str, Any]:
        return {"old_exists": ex.relation_exists(self.table), "archived_exists": ex.relation_exists(self.archived)}

    def report(self, ex: DdlExecutor) -> dict[str, Any]:
        """The archive and its dates as the table comment states them (the source of truth for drop)."""
        dates = parse_archive_comment(_table_comment(ex, self.archived)) if ex.relation_exists(self.archived) else None
        return {"table": str(self.table), "archived": str(self.archived),
                "archived_at": dates[0].isoformat() if dates else None,
                "safe_drop_at": dates[1].isoformat() if dates else None}

    def apply(self, ex: DdlExecutor) -> list[str]:
        old, arch = ex.relation_exists(self.table), ex.relation_exists(self.archived)
        if old and arch:
            raise DdlError(f"both {self.table} and {self.archived} exist: an earlier archive was restored by hand "
                           f"or a table was re-created; resolve by hand (nothing was renamed)")
        if not old and not arch:
            raise DdlError(f"neither {self.table} nor {self.archived} exists: nothing to archive (already dropped?)")
        if arch:
            dates = parse_archive_comment(_table_comment(ex, self.archived))
            if dates:
                notes = [f"{self.table} already archived as {self.archived} on {dates[0]:{_TS}} "
                         f"(safe to drop after {dates[1]:{_TS}}); nothing to do"]
                return notes + self._record(ex, renamed_now=False)
            ex.execute("cleanup/set_comment.sql", {}, {
                "schema_name": self.archived.schema_name, "table_name": self.archived.table,
                "comment": archive_comment(self.archived_at, self.safe_drop_at)},
                table=self.archived, what=f"comment on {self.archived}")
            notes = [f"{self.archived} existed without an archive comment (renamed by hand?); dated it now"]
            return notes + self._record(ex, renamed_now=True)
        ex.execute("cleanup/archive_table.sql",
                   {"schema": self.table.schema_name, "table": self.table.table, "archived": self.archived.table},
                   {"schema_name": self.archived.schema_name, "archived_name": self.archived.table,
                    "comment": archive_comment(self.archived_at, self.safe_drop_at)},
                   table=self.table, what=f"archive {self.table} as {self.archived}")
        notes = [f"renamed {self.table} to {self.archived}; safe to drop after {self.safe_drop_at:{_TS}}"]
        return notes + self._record(ex, renamed_now=True)

    def _record(self, ex: DdlExecutor, *, renamed_now: bool) -> list[str]:
        """One ``cleanup.archived`` ledger record per table (the drop check's baseline), written unless
        the record of this very table (same OID) is there: a re-run writes nothing."""
        schema = self.schema
        if ex.relation_exists(self.archived):  # (planning before the rename: not yet, so it would be recorded)
            record = archive_record(ex.conn, schema, self.archived)
            activity = table_activity(ex.conn, [self.archived])[str(self.archived)]
            if record is not None and record.get("relid") == activity.relid:
                return []

        def write() -> None:
            dates = parse_archive_comment(_table_comment(ex, self.archived))
            activity = table_activity(ex.conn, [self.archived])[str(self.archived)]
            details = {**ex.context, "table": str(self.table), "archived_table": str(self.archived),
                       "relid": activity.relid, "archived_at": dates[0].isoformat(),
                       "safe_drop_at": dates[1].isoformat(), "renamed_now": renamed_now,
                       "writes_baseline": activity.writes, "scans_baseline": activity.scans,
                       "baseline_at": datetime.now(UTC).isoformat(),
                       "stats_reset": activity.stats_reset.isoformat() if activity.stats_reset else None}
            control.audit(ex.conn, schema, actor=ex.actor, action=ARCHIVED_ACTION,
                          target=_record_target(self.archived), details=details,
                          reason=f"archived {self.table}; safe to drop after {dates[1]:{_TS}}")

        ex.action(f"-- + one audit-ledger record {ARCHIVED_ACTION} {self.archived} (relid, write-counter baseline)",
                  write)
        return [f"recorded {ARCHIVED_ACTION} for {self.archived}"]

    def problems(self, ex: DdlExecutor) -> list[str]:
        out = []
        if ex.relation_exists(self.table):
            out.append(f"{self.table} still exists under its old name")
        if not ex.relation_exists(self.archived):
            out.append(f"{self.archived} does not exist")
        elif parse_archive_comment(_table_comment(ex, self.archived)) is None:
            out.append(f"{self.archived} has no archive comment with dates")
        return out

    def revert(self, ex: DdlExecutor, before: dict[str, Any]) -> list[str]:
        if not before.get("old_exists"):
            return [f"{self.table} was not there before archiving; nothing to rename back"]
        if ex.relation_exists(self.table):
            return [f"{self.table} exists again; nothing to do"]
        if not ex.relation_exists(self.archived):
            raise RevertRefused(f"{self.archived} is gone (dropped?); restore it from the backup")
        ex.execute("cleanup/unarchive_table.sql",
                   {"schema": self.table.schema_name, "table": self.table.table, "archived": self.archived.table},
                   table=self.archived, what=f"un-archive {self.archived} as {self.table}")
        return [f"renamed {self.archived} back to {self.table}"]


class DropArchivedTablesStep(Step):
    """``DROP TABLE`` of every archived table in one statement, without CASCADE (seed 6.3)."""

    phase = PHASE
    step_id = "phase6.drop.archived_tables"
    title = "Drop the archived tables"

    def __init__(self, archived: list[TableRef], schema: str = "migration_control"):
        self.archived = archived
        self.schema = schema

    def before_state(self, ex: DdlExecutor) -> dict[str, Any]:
        return {str(t): ex.relation_exists(t) for t in self.archived}

    def apply(self, ex: DdlExecutor) -> list[str]:
        present = [t for t in self.archived if ex.relation_exists(t)]
        if not present:
            return ["no archived table left; nothing to drop"]
        tables = sql.SQL(", ").join(sql.Identifier(t.schema_name, t.table) for t in present)
        try:
            ex.execute("cleanup/drop_tables.sql", {"tables": tables}, table=present[0],
                       what=f"drop {', '.join(map(str, present))}")
        except psycopg2.errors.DependentObjectsStillExist as exc:
            detail = getattr(exc.diag, "message_detail", None) or ""
            raise DdlError(f"cannot drop {', '.join(map(str, present))}: other objects depend on them "
                           f"({detail.strip() or str(exc).strip()}); drop or repoint those first - nothing "
                           "was dropped") from exc
        names = ", ".join(map(str, present))
        ex.action(f"-- + one audit-ledger entry cleanup.dropped ({names})", lambda: control.audit(
            ex.conn, self.schema, actor=ex.actor, action="cleanup.dropped", target=PHASE,
            details={**ex.context, "tables": [str(t) for t in present]},
            reason="archived tables dropped after the retention period"))
        return [f"dropped {names}"]

    def problems(self, ex: DdlExecutor) -> list[str]:
        return [f"{t} still exists" for t in self.archived if ex.relation_exists(t)]

    def revert(self, ex: DdlExecutor, before: dict[str, Any]) -> list[str]:
        raise RevertRefused("dropping tables cannot be reverted; restore them from the pre-migration backup")


class DropLegacyColumnStep(Step):
    """Drop one legacy column the cutover made unused (seed 6.3 ``DROP COLUMN IF EXISTS``)."""

    phase = PHASE

    def __init__(self, spec: DropColumn):
        self.spec = spec
        self.step_id = f"phase6.drop_column.{spec.table}.{spec.column}"
        self.title = f"Drop column {spec.table}.{spec.column}"

    def before_state(self, ex: DdlExecutor) -> dict[str, Any]:
        state = ex.column_state(self.spec.table, self.spec.column)
        return {"exists": state is not None}

    def apply(self, ex: DdlExecutor) -> list[str]:
        if not ex.relation_exists(self.spec.table):
            raise DdlError(f"table {self.spec.table} (cleanup.drop_columns) does not exist")
        if ex.column_state(self.spec.table, self.spec.column) is None:
            return [f"{self.spec.table}.{self.spec.column} does not exist; nothing to drop"]
        ex.execute("ddl/drop_column.sql", {"schema": self.spec.table.schema_name, "table": self.spec.table.table,
                                          "column": self.spec.column}, table=self.spec.table,
                   what=f"drop column {self.spec.table}.{self.spec.column}")
        return [f"dropped {self.spec.table}.{self.spec.column}"]

    def problems(self, ex: DdlExecutor) -> list[str]:
        if ex.column_state(self.spec.table, self.spec.column) is not None:
            return [f"{self.spec.table}.{self.spec.column} still exists"]
        return []

    def revert(self, ex: DdlExecutor, before: dict[str, Any]) -> list[str]:
        raise RevertRefused("a dropped column cannot be brought back with its data; restore from the backup")


# --- the gate ------------------------------------------------------------------------------
def write_cutover_age(conn, cfg: MigrationConfig, now: datetime, **params: Any) -> GateResult:
    """Passed when ``write_to_new`` is on and became so at least ``min_age`` ago (a gate evaluator)."""
    gate = "write_cutover_age"
    min_age = params.get("min_age") or cfg.cleanup.min_age_after_write_cutover
    flags = control.get_flags(conn, cfg.control_schema)
    point = write_cutover_point(conn, cfg.control_schema)
    figures: dict[str, Any] = {"write_to_new": flags.get("write_to_new"), "min_age": fmt_duration(min_age),
                               "write_cutover_at": point.at.isoformat() if point else None}
    if not flags.get("write_to_new"):
        return GateResult(gate, "failed", "writes are not on the new tables (write_to_new is false): phase 6 "
                          "cleanup must wait for the phase 5 write cutover", figures)
    if point is None:
        return GateResult(gate, "failed", "write_to_new is true but the audit ledger has no record of the switch; "
                          "cannot tell how long ago the write cutover happened", figures)
    age = now - point.at
    allowed_from = point.at + min_age
    figures.update({"age": fmt_duration(age), "allowed_from": allowed_from.isoformat(timespec="seconds")})
    if age < min_age:
        return GateResult(gate, "waiting", (
            f"the write cutover was {fmt_duration(age)} ago ({point.at:%Y-%m-%d %H:%M:%S} UTC); cleanup is allowed "
            f"{fmt_duration(min_age)} after it, from {allowed_from:%Y-%m-%d %H:%M:%S} UTC"), figures)
    return GateResult(gate, "passed", f"the write cutover was {fmt_duration(age)} ago (at least "
                      f"{fmt_duration(min_age)} required)", figures)


# --- archive -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArchiveState:
    table: str
    archived: str
    state: str  # "live" | "archived" | "conflict" | "missing"


def archive_states(conn, cfg: MigrationConfig) -> list[ArchiveState]:
    ex = DdlExecutor(conn, cfg.ddl, planning=True)
    out = []
    for table in cfg.cleanup.archive_tables:
        arch = archived_ref(cfg, table)
        old, archived = ex.relation_exists(table), ex.relation_exists(arch)
        state = "conflict" if old and archived else "live" if old else "archived" if archived else "missing"
        out.append(ArchiveState(str(table), str(arch), state))
    return out


def _record_target(archived: TableRef) -> str:
    return str(archived)


def archive_record(conn, schema: str, archived: TableRef) -> dict[str, Any] | None:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "cleanup/archive_record.sql", {"schema": schema}, {"target": _record_target(archived)})
        row = cur.fetchone()
    if not conn.autocommit:
        conn.rollback()
    return None if row is None else {"audit_id": row[0], "at": row[1], **(row[2] or {})}


STOP_OLD_WRITES = {"dual_write_enabled": False, "keep_old_sync": False, "shadow_read_pct": 0}


def stop_old_writes_steps(cfg: MigrationConfig) -> list[SetFlag]:
    """Dual-write, keep_old_sync and shadow reads off. Shadow reads (phase 4) read the old tables too:
    left on, every one of them would fail once the tables are renamed."""
    return [SetFlag(cfg.control_schema, flag, off, phase=PHASE, step_id=f"{PHASE}.stop_old_writes.{flag}",
                    reason="phase 6 cleanup: the old tables are about to be archived")
            for flag, off in STOP_OLD_WRITES.items()]


def stop_old_writes(conn, cfg: MigrationConfig, *, actor: str, context: dict, sleep=None) -> dict[str, Any]:
    """The flags off (steps: audited, idempotent); then wait until the old tables stay quiet."""
    import time

    sleep = sleep or time.sleep
    steps = stop_old_writes_steps(cfg)
    runner = StepRunner(conn, schema=cfg.control_schema, ddl=cfg.ddl, actor=actor, context=context)
    results = runner.apply(steps)
    runner.verify(steps)
    changes = {flag: "turned off" if r.changed else "already off" for flag, r in zip(STOP_OLD_WRITES, results,
                                                                                       strict=True)}
    if any(r.changed for r in results):
        sleep(cfg.cutover.flag_propagation.total_seconds())  # let every app instance see the change
    live = [t for t, s in zip(cfg.cleanup.archive_tables, archive_states(conn, cfg), strict=True) if s.state == "live"]
    quiet = {}
    if live:
        quiet = wait_until_quiet(conn, live, quiet=cfg.cleanup.quiet_period, timeout=cfg.cutover.quiesce_timeout)
    return {"flags": changes, "watched": [str(t) for t in live], **quiet}


def archive_needed(conn, cfg: MigrationConfig, **_task: Any) -> bool:
    """Whether any table is still to archive (False: a re-run is a no-op); refuses on a conflict."""
    states = archive_states(conn, cfg)
    for s in states:
        log.info("%s: %s (archive name %s)", s.table, s.state, s.archived)
    bad = [s for s in states if s.state in ("conflict", "missing")]
    if bad:
        raise CleanupRefused("cannot archive: " + "; ".join(
            f"{s.table} and {s.archived} both exist" if s.state == "conflict" else
            f"neither {s.table} nor {s.archived} exists" for s in bad))
    if not any(s.state == "live" for s in states):
        log.info("every table is already archived: nothing to do (no-op)")
        return False
    return True


def archive_steps(cfg: MigrationConfig, now: datetime | None = None) -> list[Step]:
    """One archive step per cleanup.archive_tables entry, after the cleanup preflight (each table, or
    its archive, exists; plan and apply)."""
    preflight.run_preflight(cfg, parts=(preflight.CLEANUP,))
    now = now or datetime.now(UTC)
    return [ArchiveTableStep(cfg, t, now) for t in cfg.cleanup.archive_tables]


def archive(conn, cfg: MigrationConfig, *, actor: str, context: dict, now: datetime | None = None
            ) -> dict[str, Any]:
    """Archive every configured table (idempotent; each step writes its ledger record), as the DAG does."""
    steps = archive_steps(cfg, now)
    if not steps:
        return {"archived": [], "note": "cleanup.archive_tables is empty; nothing to archive"}
    runner = StepRunner(conn, schema=cfg.control_schema, ddl=cfg.ddl, actor=actor, context=context)
    results = runner.apply(steps)
    runner.verify(steps)
    out = []
    ex = DdlExecutor(conn, cfg.ddl, planning=True)
    for step, result in zip(steps, results, strict=True):
        dates = parse_archive_comment(_table_comment(ex, step.archived))
        out.append({"table": str(step.table), "archived": str(step.archived), "notes": result.notes,
                    "archived_at": dates[0].isoformat(), "safe_drop_at": dates[1].isoformat(),
                    "changed": result.changed})
    return {"archived": out, "changed": any(e["changed"] for e in out)}


# --- drop ----------------------------------------------------------------------------------
def consistency_streak(conn, cfg: MigrationConfig, now: datetime) -> dict[str, Any]:
    """Seed post-migration checklist "all consistency checks passing for 7 days", from consistency_runs.

    Passes when every full run finished in the last ``cleanup.consistency_passing_for`` passed, the
    current streak of passed runs began at least that long ago, and no stretch of it (nor the time
    since its latest run) is longer than ``cleanup.consistency_max_gap``. ``problems`` says what is short.
    """
    need, max_gap = cfg.cleanup.consistency_passing_for, cfg.cleanup.consistency_max_gap
    with conn.cursor() as cur:
        sqlfiles.run(cur, "cleanup/consistency_streak.sql", {"schema": cfg.control_schema},
                     {"kinds": ["full"], "now": now})
        last_bad, start, last, runs, gap_s = cur.fetchone()
    if not conn.autocommit:
        conn.rollback()
    out: dict[str, Any] = {"required": fmt_duration(need), "max_gap": fmt_duration(max_gap), "runs": int(runs or 0),
                           "streak_start": start.isoformat(timespec="seconds") if start else None,
                           "latest_run": last.isoformat(timespec="seconds") if last else None,
                           "last_not_passed": last_bad.isoformat(timespec="seconds") if last_bad else None}
    problems: list[str] = []
    hint = "keep migration_consistency_hourly running (and fix what it finds)"
    if cfg.consistency.retention < need:
        problems.append(f"consistency.retention ({fmt_duration(cfg.consistency.retention)}) is shorter than "
                        f"cleanup.consistency_passing_for ({fmt_duration(need)}): the history cannot prove it")
    if start is None:
        why = f" (the latest, at {last_bad:%Y-%m-%d %H:%M} UTC, did not pass)" if last_bad else ""
        problems.append(f"no passing consistency run to build on{why}: consistency checks must pass for "
                        f"{fmt_duration(need)} before the drop; {hint}")
        out["problems"] = problems
        return out
    streak = now - start
    out["passing_for"] = fmt_duration(streak)
    if streak < need:
        since = f" (the run at {last_bad:%Y-%m-%d %H:%M} UTC did not pass)" if last_bad else ""
        problems.append(f"consistency checks have passed for {fmt_duration(streak)}{since}, need "
                        f"{fmt_duration(need)}: {fmt_duration(need - streak)} to go; {hint}")
    since_last = now - last
    longest = max(timedelta(seconds=gap_s or 0), since_last)
    out["longest_gap"] = fmt_duration(longest)
    if longest > max_gap:
        problems.append(f"a stretch of {fmt_duration(longest)} without a consistency run (allowed "
                        f"{fmt_duration(max_gap)}; the latest run finished {fmt_duration(since_last)} ago): passing "
                        f"checks must be continuous; {hint}")
    out["problems"] = problems
    return out


def drop_readiness(conn, cfg: MigrationConfig, now: datetime | None = None) -> GateResult:
    """May the archived tables be dropped now? ``passed`` only if every check holds (fails closed)."""
    now = now or datetime.now(UTC)
    schema = cfg.control_schema
    ex = DdlExecutor(conn, cfg.ddl, planning=True)
    problems: list[str] = []
    tables: dict[str, Any] = {}
    for table in cfg.cleanup.archive_tables:
        arch = archived_ref(cfg, table)
        info: dict[str, Any] = {}
        tables[str(arch)] = info
        if not ex.relation_exists(arch):
            info["state"] = "live" if ex.relation_exists(table) else "gone"
            if info["state"] == "live":
                problems.append(f"{table} is not archived (run the DAG with action=archive first)")
            continue
        record = archive_record(conn, schema, arch)
        dates = parse_archive_comment(_table_comment(ex, arch))
        activity = table_activity(conn, [arch])[str(arch)]
        info.update({"state": "archived", "writes_now": activity.writes, "scans_now": activity.scans})
        if record is None:
            problems.append(f"{arch} has no archive record in the audit ledger (archived by hand?); cannot prove "
                            "when it was archived or that nothing wrote it since - re-archive it with this DAG")
            continue
        safe = datetime.fromisoformat(record["safe_drop_at"])
        if dates and dates[1] > safe:
            safe = dates[1]  # the comment was moved later by hand: honour the later date
        info.update({"archived_at": record["archived_at"], "safe_drop_at": safe.isoformat(),
                     "writes_baseline": record["writes_baseline"], "scans_baseline": record.get("scans_baseline")})
        if now < safe:
            problems.append(f"{arch} is safe to drop only after {safe:%Y-%m-%d %H:%M:%S} UTC "
                            f"(archived {record['archived_at']}, retention "
                            f"{fmt_duration(cfg.cleanup.archive_retention)}); {fmt_duration(safe - now)} to go")
        if record.get("relid") != activity.relid:
            problems.append(f"{arch} is not the table that was archived (OID {activity.relid}, archived "
                            f"{record.get('relid')}): it was re-created; investigate before dropping")
        reset = activity.stats_reset
        baseline_at = datetime.fromisoformat(record["baseline_at"])
        if reset is not None and reset > baseline_at:
            problems.append(f"the statistics of this database were reset at {reset:%Y-%m-%d %H:%M:%S} UTC, after "
                            f"{arch} was archived: its write counter cannot prove that nothing wrote it")
        elif activity.writes > int(record["writes_baseline"]):
            n = activity.writes - int(record["writes_baseline"])
            problems.append(f"{arch} received {n:,} row write(s) since it was archived: something still uses it "
                            "- find it before dropping")
        if activity.scans > int(record.get("scans_baseline") or 0):
            info["reads_since_archive"] = activity.scans - int(record.get("scans_baseline") or 0)
    all_gone = bool(tables) and all(i.get("state") == "gone" for i in tables.values())
    consistency = {} if all_gone else consistency_streak(conn, cfg, now)
    problems += consistency.pop("problems", [])
    figures = {"tables": tables, "now": now.isoformat(timespec="seconds"), "consistency": consistency}
    if problems:
        return GateResult("drop_archived_tables", "failed", "; ".join(problems), figures)
    if all(i.get("state") == "gone" for i in tables.values()):
        return GateResult("drop_archived_tables", "passed", "the archived tables are already dropped", figures)
    reads = {t: i["reads_since_archive"] for t, i in tables.items() if i.get("reads_since_archive")}
    note = f" (read since archiving: {reads} - check who reads them)" if reads else ""
    return GateResult("drop_archived_tables", "passed",
                      f"past the safe-drop date and no writes since archiving{note}", figures)


def drop_steps(cfg: MigrationConfig) -> list[Step]:
    steps: list[Step] = [DropArchivedTablesStep([archived_ref(cfg, t) for t in cfg.cleanup.archive_tables],
                                                cfg.control_schema)]
    return steps + [DropLegacyColumnStep(c) for c in cfg.cleanup.drop_columns]


def steps_for(action: str):
    """The step builder of an action, for ``run_steps`` (archive: the flags off, then the renames)."""
    if action == "archive":
        return lambda cfg: [*stop_old_writes_steps(cfg), *archive_steps(cfg)]
    if action == "drop":
        return drop_steps
    raise ValueError(f"action must be 'archive' or 'drop', got {action!r}")


def plan(conn, cfg: MigrationConfig, action: str) -> list[str]:
    """The exact SQL the archive or drop action would send now (nothing is changed)."""
    if action == "archive":
        steps = archive_steps(cfg)
    elif action == "drop":
        steps = drop_steps(cfg)
    else:
        raise ValueError(f"action must be 'archive' or 'drop', got {action!r}")
    out = []
    for step in steps:
        ex = DdlExecutor(conn, cfg.ddl, planning=True)
        notes = step.apply(ex)
        out.append(f"-- {step.step_id}: {'; '.join(notes)}")
        out += [s.rstrip().rstrip(";") + ";" for s in ex.recorded]
    return out
