"""Repair what a consistency run found, then re-diff exactly those keys (block/spirit's "fix, re-verify").

Spirit recopies a mismatched chunk (DELETE the target chunk, copy it again from the source) and
checksums again. Here the new table is not a copy we may rebuild: its rows have their own ids,
other new tables reference them and the application writes them (dual-write), so the repair works
per key, for the keys the last consistency run stored, and never touches another row:

* **changed** (a column differs, or the row is in scope on the new side only while the old row is
  still there in scope): the new row is re-copied from the old one (the backfill's mapping, value
  maps and lookups; overwritten unless the new row's version column is strictly newer);
* **missing in new**: the old row is inserted;
* **ghost**: a new row whose old row is gone, or out of scope (a listing SOLD in the old table but
  still ``active`` in the new one), is deleted.

What to do with a key is decided again, per batch, while its new row is locked (``FOR UPDATE``),
from the old row as it is *then*: a row the application changed since the diff is repaired to its
current state (or left alone when it already matches). Every batch is one transaction on the new
side; its audit-ledger entry (keys per action, the whole before-image of every row overwritten or
deleted) commits with it. Deleting more than ``consistency.repair_max_deletes`` rows needs the
``repair_deletes`` approval (the step refuses otherwise, also at apply time when the count grew).

``verify`` re-diffs exactly the repaired keys with the diff's own row comparison (re-read once
after ``consistency.recheck_delay`` for in-flight writes) and lists every key still differing,
plus what a repair cannot do: in-scope new rows without a legacy id, entity checks that errored,
and differences beyond the stored keys (``consistency.max_stored_keys``: re-run phase 3 and repair
again). A passing repair does not make phase 3 pass by itself: re-run phase 3 for the verdict.

No revert: putting back ghosts and stale values would only re-create the differences; the
before-images are in the ledger (``consistency_repair`` entries).
"""

from __future__ import annotations

import io
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg2

from migration_engine import control, pacing, sqlfiles
from migration_engine.backfill.engine import RETRYABLE
from migration_engine.backfill.engine import configure_session as backfill_session
from migration_engine.backfill.sqlgen import EntitySql
from migration_engine.config import MigrationConfig
from migration_engine.consistency import keys, runs, store
from migration_engine.consistency.diff import EntityDiffer
from migration_engine.consistency.keys import KeyType
from migration_engine.consistency.plan import build_entity_plan
from migration_engine.consistency.results import ConsistencyError
from migration_engine.consistency.sessions import SessionPool
from migration_engine.ddl import DdlExecutor
from migration_engine.errors import MigrationError, Refused
from migration_engine.steps import Step

log = logging.getLogger(__name__)

APPROVAL_POINT = "repair_deletes"
ROW_KINDS = ("missing_in_new", "missing_in_old", "changed")
BATCH = 500  # keys per new-side transaction
APPLICATION_NAME = "zdm-repair"


class RepairError(MigrationError):
    """The repair cannot run as asked (no such consistency run, an entity that cannot be read)."""


class RepairRefused(Refused):
    """The repair would delete more rows than allowed without (or beyond) an approval."""


# --- what the run found ------------------------------------------------------------------------
@dataclass
class EntityTargets:
    name: str
    status: str
    counts: dict[str, int]
    message: str
    keys: dict[str, list[str]] = field(default_factory=dict)  # stored keys per row kind, as text
    unlinked: list[str] = field(default_factory=list)          # new keys of in-scope rows without legacy id
    key_types: set[str] = field(default_factory=set)           # key types the findings were recorded with

    @property
    def all_keys(self) -> list[str]:
        return sorted({k for kind in ROW_KINDS for k in self.keys.get(kind, [])})

    def truncated(self) -> dict[str, tuple[int, int]]:
        """Kinds whose exact count exceeds the keys the run stored: {kind: (count, stored)}."""
        out = {}
        for kind in ROW_KINDS:
            n, stored = int(self.counts.get(kind, 0)), len(self.keys.get(kind, []))
            if n > stored:
                out[kind] = (n, stored)
        n, stored = int(self.counts.get("unlinked_in_new", 0)), len(self.unlinked)
        if n > stored:
            out["unlinked_in_new"] = (n, stored)
        return out


def latest_run(conn, cfg: MigrationConfig) -> store.ConsistencyRun | None:
    """The last finished consistency run (phase 3's ``diff`` or a ``full`` one), or None."""
    return store.last_consistency_run(conn, cfg, kinds=("diff", "full"))


def load_targets(conn, schema: str, run_pk: int) -> dict[str, EntityTargets]:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "consistency/repair_findings.sql", {"schema": schema}, {"run_pk": run_pk})
        rows = cur.fetchall()
    if not conn.autocommit:
        conn.commit()
    out: dict[str, EntityTargets] = {}
    for check, status, counts, message, kind, key, key_type in rows:
        t = out.setdefault(check, EntityTargets(check, status, dict(counts or {}), message or ""))
        if kind in ROW_KINDS:
            t.keys.setdefault(kind, []).append(str(key))
            t.key_types.add(key_type or keys.LEGACY_KEY_TYPE)
        elif kind == "unlinked_in_new":
            t.unlinked.append(str(key))
    return out


def _read_keys_sql(es: EntitySql, cur, batch: list) -> str:
    """The exact ``COPY (SELECT ...) TO STDOUT`` of the in-scope old rows of ``batch`` (any key
    type: the keys go as one array literal that takes the key column's type)."""
    tpl = sqlfiles.load("consistency/repair_read_keys.sql")
    params = {"keys": keys.array_literal(batch), **es.scope_params, **es.map_params()}
    tpl.check_params(params)
    return cur.mogrify(tpl.compose(select_list=es.select_list(), **es.old_ids()), params).decode()


# --- the state of the keys now ---------------------------------------------------------------------
Row = tuple[bool, str, list, Any]  # diff.Row: (in_scope, digest, values, new key)


@dataclass
class EntityRepair:
    """What the repair would do to one entity's keys, from both sides as they are now."""

    name: str
    insert: list = field(default_factory=list)
    recopy: list = field(default_factory=list)
    delete: list = field(default_factory=list)
    clean: list = field(default_factory=list)     # equal again since the diff: nothing to do
    findings: dict = field(default_factory=dict)
    key_type: KeyType = KeyType(keys.LEGACY_KEY_TYPE)

    @property
    def work(self) -> int:
        return len(self.insert) + len(self.recopy) + len(self.delete)

    def as_dict(self) -> dict[str, Any]:
        return {"insert": self.insert, "recopy": self.recopy, "delete": self.delete, "clean": self.clean}


def read_keys(cfg: MigrationConfig, name: str, stored: list[str], connect: runs.Connectors,
              key_types: set[str] | None = None) -> tuple[KeyType, dict, dict]:
    """Compare the keys ``stored`` (as text) of entity ``name`` on both sides now, with the diff's
    own row comparison: (key type, {key: finding or None}, {key: (old row, new row)}).

    The stored keys are parsed with the key column's type as the catalog has it now, and refused
    when the findings were recorded with a key of another type (the table or config changed since
    the run): a text key read back as another type could address other rows."""
    c = cfg.consistency
    with SessionPool(connect["legacy"], c.statement_timeout, label="legacy") as old, \
            SessionPool(connect["new"], c.statement_timeout, label="new") as new:
        try:
            plan = build_entity_plan(cfg, name, old.get(), new.get())
        except ConsistencyError as exc:
            raise RepairError(f"cannot repair {name}: {exc}") from exc
        kt = plan.key_type
        recorded = {keys.KeyType(u).family for u in (key_types or set())}
        if recorded - {kt.family}:
            raise RepairError(
                f"cannot repair {name}: the run recorded {'/'.join(sorted(key_types))} keys but "
                f"{plan.entity.old_table}.{plan.entity.key} is {kt.data_type} now; re-run phase 3 and repair its run")
        try:
            wanted = sorted({kt.parse(k) for k in stored})
        except ConsistencyError as exc:
            raise RepairError(f"cannot repair {name}: {exc}") from exc
        differ = EntityDiffer(cfg, plan, old, new)
        if not wanted:
            return kt, {}, {}
        old_now = dict(differ.rows("old", None, None, keys=wanted))
        new_now = dict(differ.rows("new", None, None, keys=wanted))
        rows = {k: (old_now.get(k), new_now.get(k)) for k in wanted}
        return kt, {k: differ.classify(k, o, n) for k, (o, n) in rows.items()}, rows


def assess(cfg: MigrationConfig, name: str, stored: list[str], connect: runs.Connectors,
           key_types: set[str] | None = None) -> EntityRepair:
    kt, findings, rows = read_keys(cfg, name, stored, connect, key_types)
    rep = EntityRepair(name, key_type=kt)
    for k in sorted(rows):
        f = findings.get(k)
        o, n = rows.get(k, (None, None))
        if f is None:
            rep.clean.append(k)
        elif o is not None and o[0]:
            (rep.insert if n is None else rep.recopy).append(k)
            rep.findings[k] = f
        else:  # old row gone or out of scope, new row in scope: a ghost
            rep.delete.append(k)
            rep.findings[k] = f
    return rep


def _paced_text(p: dict[str, Any]) -> str:
    rate = f", last rate {p['last_rate']:,.0f} rows/s" if p.get("last_rate") is not None else ""
    return (f"{p['batches']} batch(es), slept {p['slept_seconds']:.1f}s, paused {p['paused_seconds']:.1f}s"
            f"{rate}")


# --- the step ---------------------------------------------------------------------------------------
class RepairRun(Step):
    phase = "phase3"

    def __init__(self, cfg: MigrationConfig, run_pk: int, *, approved_deletes: int | None = None,
                 connect: runs.Connectors | None = None, sleep: Callable[[float], None] = time.sleep,
                 batch_size: int = BATCH, probe: Callable[[EntitySql], pacing.SignalSource] | None = None):
        if not isinstance(run_pk, int) or isinstance(run_pk, bool) or run_pk < 1:
            raise RepairError(f"repair needs the id of a consistency run (a positive integer), got {run_pk!r}")
        if approved_deletes is not None and approved_deletes < 0:
            raise RepairError(f"approved_deletes must be >= 0, got {approved_deletes!r}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise RepairError(f"repair batch_size must be a positive integer, got {batch_size!r}")
        self.batch_size = batch_size
        self.probe = probe  # replaces the latency probe (tests: a simulated signal)
        self.cfg = cfg
        self.run_pk = run_pk
        self.approved_deletes = approved_deletes
        self.connect = connect or runs.connectors(cfg)
        self.sleep = sleep
        self.step_id = f"phase3.repair.run{run_pk}"
        self.title = f"repair the differences consistency run {run_pk} found, then re-diff those keys"
        self._rng = random.Random()

    @property
    def schema(self) -> str:
        return self.cfg.control_schema

    @property
    def limit(self) -> int:
        return self.cfg.consistency.repair_max_deletes

    def targets(self, ex: DdlExecutor) -> dict[str, EntityTargets]:
        if not store.tables_exist(ex.conn, self.schema):
            raise RepairError("no consistency run recorded yet (no consistency tables): run phase 3 first")
        targets = load_targets(ex.conn, self.schema, self.run_pk)
        if not targets:
            raise RepairError(f"consistency run {self.run_pk} has no entity check results: no such run, or it "
                              "did not get to diff any entity (see its log); run phase 3 and repair its run")
        unknown = sorted(set(targets) - set(self.cfg.entities))
        if unknown:
            raise RepairError(f"consistency run {self.run_pk} diffed entities the config no longer has: {unknown}")
        return targets

    def assessment(self, ex: DdlExecutor) -> tuple[dict[str, EntityTargets], dict[str, EntityRepair]]:
        targets = self.targets(ex)
        return targets, {name: assess(self.cfg, name, t.all_keys, self.connect, t.key_types)
                         for name, t in targets.items() if t.all_keys}

    def summary(self, ex: DdlExecutor) -> dict[str, Any]:
        """What a repair would do now (for the approval's figures and the DAG's route)."""
        targets, repairs = self.assessment(ex)
        deletes = sum(len(r.delete) for r in repairs.values())
        return {"run_pk": self.run_pk, "deletes": deletes, "limit": self.limit,
                "needs_approval": deletes > self.limit,
                "entities": {n: {k: len(v) for k, v in r.as_dict().items()} for n, r in repairs.items()},
                "not_repairable": self._unrepairable(targets)}

    def _allowed_deletes(self) -> int:
        return max(self.limit, self.approved_deletes or 0)

    def before_state(self, ex: DdlExecutor) -> dict[str, Any]:
        targets = self.targets(ex)
        return {"run_pk": self.run_pk, "keys": {n: t.keys for n, t in targets.items()}}

    # -- SQL ---------------------------------------------------------------------------------
    def _es(self, name: str) -> EntitySql:
        return EntitySql(name, self.cfg.entities[name], self.schema)

    def _sql_text(self, ex: DdlExecutor, es: EntitySql, rep: EntityRepair) -> str:
        """The exact statements of one entity's repair (one transaction per batch of keys)."""
        copy = sorted(rep.insert + rep.recopy)
        everything = sorted(copy + rep.delete)
        with ex.conn.cursor() as cur:
            lock = sqlfiles.render(cur, "consistency/repair_lock_rows.sql", es.new_ids(),
                                   {"keys": keys.array_literal(everything)})
            check = sqlfiles.render(cur, "consistency/repair_old_state.sql", es.old_ids(),
                                    {"keys": keys.array_literal(everything), **es.scope_params})
            read = _read_keys_sql(es, cur, copy)
            stage = es.create_stage().as_string(ex.conn)
            copy_in = es.copy_into_stage().as_string(ex.conn)
            write = es.write_batch(self.cfg.backfill.version_column, repair=True).as_string(ex.conn)
            delete = sqlfiles.render(cur, "consistency/repair_delete_ghosts.sql", es.new_ids(),
                                     {"keys": keys.array_literal(rep.delete)})
        if not ex.conn.autocommit:
            ex.conn.rollback()
        return "\n".join([
            f"-- repair {es.name} (consistency run {self.run_pk}): insert {rep.insert}, re-copy {rep.recopy}, "
            f"delete {rep.delete}; per batch of {self.batch_size} keys, one transaction on the new database "
            "(paced between batches: pacing.repair):",
            "-- new:", "BEGIN;", lock,
            "-- legacy: the old rows now (the action per key is decided again here, under the lock):", check,
            "-- legacy:", read, "-- new:", stage, copy_in, write, delete,
            f"-- legacy: INSERT INTO {self.schema}.audit_ledger (action consistency_repair: keys, before-images)",
            "-- new:", "COMMIT;"])

    # -- apply -------------------------------------------------------------------------------
    def apply(self, ex: DdlExecutor) -> list[str]:
        targets, repairs = self.assessment(ex)
        notes = [f"consistency run {self.run_pk}"]
        deletes = sum(len(r.delete) for r in repairs.values())
        if deletes > self._allowed_deletes():
            approved = (f" and than the {self.approved_deletes} approved" if self.approved_deletes is not None
                        else f" without the {APPROVAL_POINT} approval")
            why = (f"the repair would delete {deletes} new rows, more than consistency.repair_max_deletes "
                   f"({self.limit}){approved}")
            if not ex.planning:
                raise RepairRefused(f"{why}; nothing changed. Ghosts: "
                                    + "; ".join(f"{n}: {r.delete[:20]}" for n, r in repairs.items() if r.delete))
            notes.append(f"needs the {APPROVAL_POINT} approval: {why}")
        budget = [self._allowed_deletes()]
        for name, rep in repairs.items():
            notes.append(f"{name}: insert {len(rep.insert)}, re-copy {len(rep.recopy)}, delete {len(rep.delete)}, "
                         f"already equal {len(rep.clean)}")
            if rep.work:
                es = self._es(name)
                done = ex.action(self._sql_text(ex, es, rep),
                                 lambda es=es, rep=rep: self._repair_entity(ex, es, rep, budget))
                if done and done.get("pacing"):
                    notes.append(f"{name}: paced {_paced_text(done['pacing'])}")
        notes += [f"not repairable: {p}" for p in self._unrepairable(targets)]
        if not any(r.work for r in repairs.values()):
            notes.append("nothing to repair")
        return notes

    def _repair_entity(self, ex: DdlExecutor, es: EntitySql, rep: EntityRepair, budget: list[int]) -> dict:
        todo = sorted(rep.insert + rep.recopy + rep.delete)
        done = {"written": [], "deleted": []}
        legacy, new = self.connect["legacy"](), self.connect["new"]()
        try:
            for conn in (legacy, new):
                backfill_session(conn, self.cfg.backfill, f"{APPLICATION_NAME}:{es.name}")
            legacy.commit()
            new.commit()
            with self._pacer(ex, es, legacy, new, todo) as pacer:
                for start in range(0, len(todo), self.batch_size):
                    batch = todo[start:start + self.batch_size]
                    written, deleted = self._batch(ex, legacy, new, es, rep.key_type, batch, budget)
                    done["written"] += written
                    done["deleted"] += deleted
                    pacer.pace(len(written) + len(deleted), keys={"legacy": batch, "new": batch})
                done["pacing"] = pacer.stats.as_dict()
        finally:
            for conn in (new, legacy):
                try:
                    conn.close()
                except Exception:  # noqa: BLE001 - closing is best effort
                    pass
        log.info("repair %s: %d row(s) written %s, %d deleted %s", es.name, len(done["written"]),
                 done["written"][:20], len(done["deleted"]), done["deleted"][:20])
        return done

    def _pacer(self, ex: DdlExecutor, es: EntitySql, legacy, new, todo: list) -> pacing.Pacer:
        """Pacing between batches (``pacing.repair``): health of both databases on the repair's own
        connections, ledger entries ``repair_*``, the latency probe on the old and new table."""
        work, e = self.cfg.pacing.repair, es.entity
        source = None
        if pacing.controller_on(work, self.cfg.backfill):
            if self.probe is not None:
                source = self.probe(es)
            else:
                source = pacing.LookupProbe({
                    "legacy": pacing.ProbeTarget(self.connect["legacy"], e.old_table.schema_name, e.old_table.table,
                                                 e.key),
                    "new": pacing.ProbeTarget(self.connect["new"], e.new_table.schema_name, e.new_table.table,
                                              e.legacy_id_column)},
                    self.cfg.backfill.throttle.budget, label=f"repair {es.name}")
            for side in ("legacy", "new"):
                source.add_keys(side, todo[:pacing.KEY_POOL])
        return pacing.Pacer(self.cfg, work, action="repair", target=es.name, legacy=legacy, new=new,
                            tables={"legacy": (e.old_table.schema_name, e.old_table.table),
                                    "new": (e.new_table.schema_name, e.new_table.table)},
                            probe=source, entity=es.name, actor=ex.actor,
                            context={**ex.context, "consistency_run": self.run_pk}, sleep=self.sleep)

    def _batch(self, ex, legacy, new, es: EntitySql, kt: KeyType, batch: list, budget: list[int]) -> tuple[list, list]:
        retries = 0
        while True:
            try:
                return self._batch_once(ex, legacy, new, es, kt, batch, budget)
            except psycopg2.Error as exc:
                new.rollback()
                legacy.rollback()
                why = RETRYABLE.get(getattr(exc, "pgcode", None) or "")
                if why is None or retries >= self.cfg.backfill.max_batch_retries:
                    raise
                retries += 1
                delay = min(10.0, 0.2 * 2 ** (retries - 1)) * (1 + self._rng.random() / 2)
                log.warning("repair %s: %s (try %d of %d); retrying in %.1fs", es.name, why, retries,
                            self.cfg.backfill.max_batch_retries, delay)
                self.sleep(delay)

    def _batch_once(self, ex, legacy, new, es: EntitySql, kt: KeyType, batch_keys: list,
                    budget: list[int]) -> tuple[list, list]:
        scope = es.new_scope_params()
        v = kt.value
        batch = keys.array_literal(batch_keys)
        with new.cursor() as cur, legacy.cursor() as lcur:
            # 1. new: lock the rows and keep their before-images
            sqlfiles.run(cur, "consistency/repair_lock_rows.sql", es.new_ids(), {"keys": batch})
            images = {v(k): image for k, image in cur.fetchall()}
            # 2. legacy: the old rows now decide each key
            sqlfiles.run(lcur, "consistency/repair_old_state.sql", es.old_ids(), {"keys": batch, **es.scope_params})
            old = {v(k): bool(in_scope) for k, in_scope in lcur.fetchall()}

            def new_in_scope(k) -> bool:
                return not scope["scoped"] or str(images[k].get(scope["new_scope_column"])) in scope["scope_values"]

            copy = [k for k in batch_keys if old.get(k)]
            ghosts = [k for k in batch_keys if not old.get(k) and k in images and (k not in old or new_in_scope(k))]
            if len(ghosts) > budget[0]:
                raise RepairRefused(f"repair {es.name}: {len(ghosts)} more ghost(s) to delete than allowed "
                                    f"(consistency.repair_max_deletes {self.limit}, approved "
                                    f"{self.approved_deletes}); the rows changed since the approval: re-run the "
                                    "repair to approve the new count; nothing of this batch was changed")
            # 3. legacy -> new: re-copy / insert the in-scope old rows
            written: list = []
            if copy:
                buf = io.BytesIO()
                lcur.copy_expert(_read_keys_sql(es, lcur, copy), buf)
                cur.execute(es.create_stage())
                cur.copy_expert(es.copy_into_stage().as_string(new), io.BytesIO(buf.getvalue()))
                cur.execute(es.write_batch(self.cfg.backfill.version_column, repair=True))
                written = sorted(v(r[0]) for r in cur.fetchall())
            # 4. new: delete the ghosts
            deleted: list = []
            if ghosts:
                sqlfiles.run(cur, "consistency/repair_delete_ghosts.sql", es.new_ids(),
                             {"keys": keys.array_literal(ghosts)})
                deleted = sorted(v(r[0]) for r in cur.fetchall())
            legacy.commit()
            # 5. legacy: the ledger entry, committed right after the new side's change
            touched = set(written) | set(deleted)
            details = {**ex.context, "consistency_run": self.run_pk, "entity": es.name, "keys": batch_keys,
                       "written": written, "deleted": deleted,
                       "deleted_old_row_gone": [k for k in deleted if k not in old],
                       "skipped_newer_in_new": sorted(set(copy) - set(written)),
                       "before": {str(k): images[k] for k in sorted(touched) if k in images}}
            control.append_audit(legacy, self.schema, actor=ex.actor, action="consistency_repair",
                                 target=f"{es.name}", details=json.loads(json.dumps(details, default=str)),
                                 reason=f"repair of consistency run {self.run_pk}")
        new.commit()
        legacy.commit()
        budget[0] -= len(deleted)
        return written, deleted

    # -- verify: re-diff exactly those keys ----------------------------------------------------
    def _unrepairable(self, targets: dict[str, EntityTargets]) -> list[str]:
        out = []
        for name, t in targets.items():
            if t.status == "error":
                out.append(f"{name}: the check errored in run {self.run_pk} ({t.message}); fix that and re-run phase 3")
            if t.unlinked:
                out.append(f"{name}: {t.counts.get('unlinked_in_new', len(t.unlinked))} in-scope new row(s) without "
                           f"a legacy id (new keys {t.unlinked[:20]}): the application created them; fix by hand")
            for kind, (n, stored) in t.truncated().items():
                if kind != "unlinked_in_new":
                    out.append(f"{name}: run {self.run_pk} found {n} {kind} but stored {stored} keys "
                               "(consistency.max_stored_keys): re-run phase 3 and repair its run again")
        return out

    def problems(self, ex: DdlExecutor) -> list[str]:
        targets = self.targets(ex)
        problems = []
        for name, t in targets.items():
            stored = t.all_keys
            if not stored:
                continue
            _kt, findings, _rows = read_keys(self.cfg, name, stored, self.connect, t.key_types)
            still = sorted(k for k, f in findings.items() if f is not None)
            if still:  # in-flight writes: read those once more after the diff's re-check delay
                self.sleep(self.cfg.consistency.recheck_delay.total_seconds())
                _kt, findings, _rows = read_keys(self.cfg, name, [str(k) for k in still], self.connect)
                still = sorted(k for k, f in findings.items() if f is not None)
            for k in still[:self.cfg.consistency.max_reported_keys]:
                f = findings[k]
                problems.append(f"{name}: key {k} still {f.kind}" + (f" ({', '.join(f.columns)})" if f.columns else ""))
            if len(still) > self.cfg.consistency.max_reported_keys:
                problems.append(f"{name}: {len(still)} keys still differ in all")
        return problems + self._unrepairable(targets)
