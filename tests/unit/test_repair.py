"""The phase-3 repair as a step against real Postgres: the four kinds of difference, nothing else touched.

Planted (the issue's measurements): a ghost (old row deleted, new row kept), an out-of-scope row
(old ACTIVE -> SOLD, new still active), a changed title (new side only, same version) and a
missing row (new row deleted). Phase 3's diff fails on them; the repair fixes all four, its re-diff
passes, a fresh diff passes, and every other row of both databases is byte-for-byte unchanged.
"""

from __future__ import annotations

import psycopg2
import pytest

from migration_engine import steps
from migration_engine.config import Ddl
from migration_engine.consistency import store
from migration_engine.consistency.step import ConsistencyRun
from migration_engine.errors import VerificationError
from migration_engine.repair import RepairError, RepairRefused, RepairRun
from tests.backfill_fixtures import compare
from tests.consistency_fixtures import OLD_ROWS, ROWS, SCHEMA, make_config, plant_repair_faults
from tests.snapshots import snapshot, unchanged

pytestmark = pytest.mark.timeout(180)


def _connect(dbs):
    return {"legacy": lambda: psycopg2.connect(dbs.legacy_dsn), "new": lambda: psycopg2.connect(dbs.new_dsn)}


class Env:
    def __init__(self, dbs, **consistency):
        self.dbs = dbs
        self.cfg = make_config(**consistency)
        self.conn = dbs.connect("legacy")
        self.n = 0

    def runner(self) -> steps.StepRunner:
        self.n += 1
        return steps.StepRunner(self.conn, schema=SCHEMA, ddl=Ddl(), actor="test:repair",
                                context={"dag_id": "test_phase3", "run_id": f"run-{self.n}", "task_id": "t"})

    def diff(self) -> tuple[int, bool]:
        """A phase-3 diff run (as its step); returns (run id, passed)."""
        r = self.runner()
        step = ConsistencyRun(self.cfg, "diff", phase="phase3", connect=_connect(self.dbs))
        r.apply([step])
        run = step.current(r.executor(planning=True))
        try:
            r.verify([step])
        except VerificationError:
            return run.id, False
        return run.id, True

    def repair(self, run_pk: int, **kw) -> RepairRun:
        return RepairRun(self.cfg, run_pk, connect=_connect(self.dbs), sleep=lambda s: None, **kw)


@pytest.fixture
def env(consistent):
    e = Env(consistent)
    yield e
    e.conn.close()


def _snapshots(dbs) -> dict:
    return {side: snapshot(dsn) for side, dsn in (("legacy", dbs.legacy_dsn), ("new", dbs.new_dsn))}


def test_repair_fixes_ghost_out_of_scope_changed_and_missing_and_nothing_else(env):
    dbs = env.dbs
    assert compare(dbs).equal
    p = plant_repair_faults(dbs)
    run_pk, passed = env.diff()
    assert not passed  # phase 3 fails on the planted rows
    found = dict(dbs.query("legacy", f"SELECT entity_key::bigint, kind FROM {SCHEMA}.consistency_findings "
                                     "WHERE run_pk = %s", (run_pk,)))
    assert found == {p.ghost: "missing_in_old", p.out_of_scope: "changed", p.changed: "changed",
                     p.missing: "missing_in_new"}
    new_before = dict(dbs.query("new", ROWS))
    old_before = dict(dbs.query("legacy", OLD_ROWS))

    step = env.repair(run_pk)
    r = env.runner()
    (applied,) = r.apply([step])
    assert applied.changed, applied.notes
    assert "listings: insert 1, re-copy 1, delete 2, already equal 0" in applied.notes
    r.verify([step])  # the re-diff of exactly those keys passes
    assert steps.get_state(env.conn, SCHEMA, step.step_id)["status"] == "verified"

    # independent check (backfill_fixtures' own SQL): every in-scope old row has one equal new row, no orphan
    c = compare(dbs)
    assert c.equal, str(c)
    new_after = dict(dbs.query("new", ROWS))
    assert p.ghost not in new_after and p.out_of_scope not in new_after and p.missing in new_after
    assert new_after[p.changed] != new_before[p.changed]
    # nothing else changed: every other row of both databases has the same checksum
    others = set(new_before) - p.keys
    assert {k: new_after[k] for k in others} == {k: new_before[k] for k in others}
    assert dict(dbs.query("legacy", OLD_ROWS)) == old_before
    # audited: the ledger names the keys and keeps the whole before-image of what was overwritten / deleted
    (entry,) = dbs.query("legacy", f"SELECT details FROM {SCHEMA}.audit_ledger WHERE action = 'consistency_repair'")
    d = entry[0]
    assert sorted(d["deleted"]) == sorted([p.ghost, p.out_of_scope]) and d["deleted_old_row_gone"] == [p.ghost]
    assert sorted(d["written"]) == sorted([p.changed, p.missing])
    assert d["before"][str(p.changed)]["title"] == "tampered" and str(p.ghost) in d["before"]

    # re-run: nothing left to send; then a fresh phase-3 diff passes
    (again,) = env.runner().apply([step])
    assert not again.changed and "listings: insert 0, re-copy 0, delete 0, already equal 4" in again.notes
    assert env.diff()[1]


def test_dry_run_lists_the_keys_and_the_exact_sql_and_changes_nothing(env):
    p = plant_repair_faults(env.dbs)
    run_pk, _ = env.diff()
    before = _snapshots(env.dbs)
    (planned,) = env.runner().plan([env.repair(run_pk)])
    after = _snapshots(env.dbs)
    for side in before:
        assert not unchanged(before[side], after[side]), unchanged(before[side], after[side])
    text = "\n".join(planned.executed)
    assert f"insert [{p.missing}]" in text and f"re-copy [{p.changed}]" in text
    assert f"delete [{min(p.ghost, p.out_of_scope)}, {max(p.ghost, p.out_of_scope)}]" in text
    assert "FOR UPDATE" in text and "COPY (" in text and 'ON CONFLICT ("legacy_listing_id") DO UPDATE' in text
    lo, hi = sorted((p.ghost, p.out_of_scope))
    assert f'"legacy_listing_id" = ANY(\'{{"{lo}","{hi}"}}\')' in text  # the keys as one array literal
    assert 'DELETE FROM "marketplace"."service_listings"' in text


def test_more_deletes_than_allowed_needs_the_approval(consistent):
    env = Env(consistent, repair_max_deletes=1)
    try:
        p = plant_repair_faults(consistent)
        run_pk, _ = env.diff()
        summary = env.repair(run_pk).summary(env.runner().executor(planning=True))
        assert summary["deletes"] == 2 and summary["needs_approval"] and summary["limit"] == 1
        before = _snapshots(consistent)
        with pytest.raises(RepairRefused, match=r"delete 2 new rows, more than consistency.repair_max_deletes \(1\) "
                                                "without the repair_deletes approval"):
            env.runner().apply([env.repair(run_pk)])
        with pytest.raises(RepairRefused, match="than the 1 approved"):
            env.runner().apply([env.repair(run_pk, approved_deletes=1)])
        after = _snapshots(consistent)
        for side in ("new",):  # the legacy side has the failed step's state and ledger entry only
            assert not unchanged(before[side], after[side]), unchanged(before[side], after[side])
        step = env.repair(run_pk, approved_deletes=2)
        r = env.runner()
        r.apply([step])
        r.verify([step])
        assert {p.ghost, p.out_of_scope}.isdisjoint(k for k, _ in consistent.query("new", ROWS))
    finally:
        env.conn.close()


def test_a_row_changed_since_the_diff_is_repaired_to_its_current_state(env):
    p = plant_repair_faults(env.dbs)
    run_pk, _ = env.diff()
    # the application brings the SOLD listing back and changes the tampered one, after the diff
    env.dbs.query("legacy", "UPDATE public.marketplace_listings SET status = 'ACTIVE', updated_at = now() "
                            "WHERE id = %s", (p.out_of_scope,))
    env.dbs.query("legacy", "UPDATE public.marketplace_listings SET title = 'new title', updated_at = now() "
                            "WHERE id = %s", (p.changed,))
    step = env.repair(run_pk)
    r = env.runner()
    r.apply([step])
    r.verify([step])
    rows = dict(env.dbs.query("new", "SELECT legacy_listing_id, title FROM marketplace.service_listings"))
    assert p.out_of_scope in rows and rows[p.changed] == "new title" and p.ghost not in rows
    assert compare(env.dbs).equal


def test_verify_names_what_a_repair_cannot_fix_and_bad_input_is_clear(env):
    env.dbs.query("new", "INSERT INTO marketplace.service_listings (provider_id, title, price_cents, status) "
                         "VALUES (1, 'app-created, no legacy id', 100, 'active')")
    run_pk, passed = env.diff()
    assert not passed
    step = env.repair(run_pk)
    r = env.runner()
    r.apply([step])
    with pytest.raises(VerificationError, match="in-scope new row.s. without a legacy id"):
        r.verify([step])
    with pytest.raises(RepairError, match="no entity check results"):
        env.runner().apply([env.repair(run_pk + 1000)])
    with pytest.raises(RepairError, match="positive integer"):
        RepairRun(env.cfg, "7")  # type: ignore[arg-type]


def test_a_passed_run_has_nothing_to_repair(env):
    run_pk, passed = env.diff()
    assert passed
    before = _snapshots(env.dbs)["new"]
    (applied,) = env.runner().apply([env.repair(run_pk)])
    assert not applied.changed and "nothing to repair" in applied.notes
    assert not unchanged(before, snapshot(env.dbs.new_dsn))
    assert store.last_consistency_run(env.conn, env.cfg, kinds=("diff",)).id == run_pk


def test_a_row_deleted_behind_a_running_backfill_is_caught_by_the_diff_and_repaired(databases):
    """Layer 3 of the delete story: the application deletes an old row whose batch the running pass
    already copied, and its dual-write delete never reaches the new table. The pass cannot see it
    (the range is behind it); phase 3's diff finds the ghost and the repair deletes it."""
    from migration_engine import control
    from migration_engine.backfill import RangeWorker, backfill_settings, plan_entity
    from tests.backfill_fixtures import add_listings
    from tests.consistency_fixtures import simulate_phase1

    legacy, new = databases.connect("legacy"), databases.connect("new")
    control.ensure_control_schema(legacy, SCHEMA)
    simulate_phase1(databases)
    add_listings(databases, 2000)
    cfg = make_config()
    s = backfill_settings(cfg, parallelism=1, batch_size=500, min_batch_size=500, max_batch_size=500)
    plan = plan_entity(legacy, new, cfg, "listings", s)
    victims: list[int] = []

    class DeletesBehind(RangeWorker):
        def _read(self, conn, after, hi, size):
            if after > plan.key_min and not victims:  # second batch: delete a row of the first, old side only
                (key,) = databases.query("legacy", "SELECT min(id) FROM public.marketplace_listings "
                                                   "WHERE status = 'ACTIVE' AND id > %s", (plan.key_min,))[0]
                databases.query("legacy", "DELETE FROM public.marketplace_listing_images WHERE listing_id = %s",
                                (key,))
                databases.query("legacy", "DELETE FROM public.marketplace_listings WHERE id = %s", (key,))
                victims.append(key)
            return super()._read(conn, after, hi, size)

    (job,) = plan.jobs
    lc, nc = (lambda: psycopg2.connect(databases.legacy_dsn)), (lambda: psycopg2.connect(databases.new_dsn))
    assert DeletesBehind(cfg, "listings", job.run_id, job.range_no, s, lc, nc).run().status == "done"
    legacy.close()
    new.close()
    assert victims and compare(databases).orphans == victims  # the pass was past it: the ghost survives

    env = Env(databases)
    try:
        run_pk, passed = env.diff()
        assert not passed
        step = env.repair(run_pk)
        r = env.runner()
        r.apply([step])
        r.verify([step])
        assert compare(databases).equal
        assert env.diff()[1]
    finally:
        env.conn.close()
