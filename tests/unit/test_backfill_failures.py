"""Backfill failure states say what happened (issue 13, item 6), against the session's real Postgres.

* a range whose connection dropped mid-copy (``pg_terminate_backend`` of the worker's own backend,
  legacy side and new side) ends ``failed`` with the error recorded - not ``running`` with nothing -
  and a re-run resumes from the checkpoint with old == new;
* a bad row (a CHECK constraint of the new table it violates) fails its range with an error naming
  entity, legacy key, column and constraint; nothing of the failing batch is written; after the fix
  the range resumes and finishes.
"""

from __future__ import annotations

import psycopg2
import pytest

from migration_engine.backfill import (
    BadRowError,
    ConnectionLostError,
    RangeWorker,
    backfill_settings,
    plan_entity,
    store,
)
from migration_engine.config import load_config
from tests.backfill_fixtures import add_listings, compare, connectors

SCHEMA = "migration_control"
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def cfg():
    return load_config()


@pytest.fixture
def conns(backfill_conns):
    return backfill_conns


def _ledger(databases, action):
    return databases.query("legacy", f"SELECT target, details, reason FROM {SCHEMA}.audit_ledger "
                                     "WHERE action = %s ORDER BY id", (action,))


class _Terminating(RangeWorker):
    """Terminates its own backend on ``side`` (from another session) before its third batch."""

    side = "legacy"
    dsn = ""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.batches_seen = 0

    def _read(self, legacy, after, hi, size):
        self.batches_seen += 1
        if self.batches_seen == 3:
            victim = legacy if self.side == "legacy" else self._new_conn
            pid = victim.get_backend_pid()
            killer = psycopg2.connect(self.dsn)
            killer.autocommit = True
            with killer.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(%s, 10000)", (pid,))
                assert cur.fetchone()[0], "pg_terminate_backend did not end the backend"
            killer.close()
        return super()._read(legacy, after, hi, size)

    def _run(self, legacy, new):
        self._new_conn = new
        return super()._run(legacy, new)


@pytest.mark.parametrize("side", ["legacy", "new"])
def test_a_dropped_connection_fails_the_range_with_the_error_and_a_rerun_resumes(databases, conns, cfg, side):
    legacy, new = conns
    add_listings(databases, 3_000)
    s = backfill_settings(cfg, parallelism=1, batch_size=500, max_batch_size=500)
    plan = plan_entity(legacy, new, cfg, "listings", s)
    (job,) = plan.jobs
    lc, nc = connectors(databases)
    worker = type("W", (_Terminating,), {"side": side,
                                          "dsn": databases.legacy_dsn if side == "legacy" else databases.new_dsn})
    with pytest.raises(ConnectionLostError, match=f"connection to the {side} database dropped mid-range"):
        worker(cfg, "listings", job.run_id, job.range_no, s, lc, nc).run()

    rng = store.get_range(legacy, SCHEMA, job.run_id, job.range_no)
    legacy.rollback()
    assert rng.status == "failed", rng
    assert rng.error and "ConnectionLostError" in rng.error and f"{side} database dropped" in rng.error, rng.error
    assert rng.last_key > job.key_lo and rng.rows_read == 2 * 500, rng  # two batches checkpointed
    assert f"resumes after key {rng.last_key}" in rng.error, rng.error
    (failed,) = _ledger(databases, "backfill_range_failed")
    assert failed[0] == f"listings#{job.range_no}" and "dropped mid-range" in failed[1]["error"]

    result = RangeWorker(cfg, "listings", job.run_id, job.range_no, s, lc, nc).run()
    assert result.status == "done"
    rng = store.get_range(legacy, SCHEMA, job.run_id, job.range_no)
    legacy.rollback()
    assert rng.status == "done" and rng.error is None, rng
    c = compare(databases)
    assert c.equal and c.new_rows == c.in_scope, c
    started = _ledger(databases, "backfill_range_started")
    assert [r for _t, _d, r in started] == ["started", "resumed from checkpoint"], started


def test_a_bad_row_names_entity_key_column_and_constraint_and_the_run_resumes_after_the_fix(
        databases, conns, cfg):
    legacy, new = conns
    add_listings(databases, 2_000)
    keys = [r[0] for r in databases.query("legacy", "SELECT id FROM public.marketplace_listings "
                                                    "WHERE status = 'ACTIVE' ORDER BY id")]
    bad = keys[len(keys) // 2 + 17]  # mid-range, inside a batch, not at a batch edge
    databases.query("legacy", "UPDATE public.marketplace_listings SET price_cents = -5 WHERE id = %s", (bad,))
    databases.query("new", "ALTER TABLE marketplace.service_listings "
                           "ADD CONSTRAINT chk_price_not_negative CHECK (price_cents >= 0)")
    s = backfill_settings(cfg, parallelism=1, batch_size=200, max_batch_size=200, min_batch_size=200)
    plan = plan_entity(legacy, new, cfg, "listings", s)
    (job,) = plan.jobs
    lc, nc = connectors(databases)

    with pytest.raises(BadRowError) as caught:
        RangeWorker(cfg, "listings", job.run_id, job.range_no, s, lc, nc).run()
    err = caught.value
    assert (err.entity, err.key, err.column, err.constraint, err.sqlstate) == (
        "listings", bad, "price_cents", "chk_price_not_negative", "23514")
    text = str(err)
    for part in ("entity listings", f"legacy id {bad}", "column price_cents (from legacy column price_cents)",
                 "check constraint chk_price_not_negative", "marketplace.service_listings"):
        assert part in text, (part, text)
    assert "Failing row contains" not in text  # keys, not row dumps

    rng = store.get_range(legacy, SCHEMA, job.run_id, job.range_no)
    legacy.rollback()
    assert rng.status == "failed" and "BadRowError" in rng.error and f"legacy id {bad}" in rng.error, rng
    assert rng.last_key < bad, rng  # the checkpoint stops before the failing batch
    (failed,) = _ledger(databases, "backfill_range_failed")
    assert failed[1]["bad_row"] == {"entity": "listings", "key": bad, "column": "price_cents",
                                    "constraint": "chk_price_not_negative", "sqlstate": "23514"}
    # nothing of the failing batch was written: the new table holds exactly the checkpointed keys
    (copied, top) = databases.query("new", "SELECT count(*), max(legacy_listing_id) "
                                           "FROM marketplace.service_listings")[0]
    assert copied == rng.rows_read and top <= rng.last_key, (copied, top, rng)

    databases.query("legacy", "UPDATE public.marketplace_listings SET price_cents = 5, updated_at = now() "
                              "WHERE id = %s", (bad,))
    result = RangeWorker(cfg, "listings", job.run_id, job.range_no, s, lc, nc).run()
    assert result.status == "done"
    c = compare(databases)
    assert c.equal and c.new_rows == c.in_scope, c


def test_a_lock_on_the_new_table_makes_the_stage_creation_wait_not_fail(databases, conns, cfg, caplog):
    """CREATE TEMP TABLE ... AS SELECT ... WITH NO DATA reads the new table's types (ACCESS SHARE): a
    long ALTER holding it meets the session's lock_timeout and is retried, not a failed range."""
    import threading

    legacy, new = conns
    s = backfill_settings(cfg, parallelism=1, lock_timeout="200ms")
    plan = plan_entity(legacy, new, cfg, "listings", s)
    (job,) = plan.jobs
    holder = databases.connect("new")
    with holder.cursor() as cur:
        cur.execute("LOCK TABLE marketplace.service_listings IN ACCESS EXCLUSIVE MODE")
    timer = threading.Timer(1.5, holder.rollback)
    timer.start()
    caplog.set_level("WARNING", logger="migration_engine.backfill")
    lc, nc = connectors(databases)
    try:
        result = RangeWorker(cfg, "listings", job.run_id, job.range_no, s, lc, nc).run()
    finally:
        timer.join()
        holder.close()
    assert result.status == "done"
    assert "lock timeout creating the stage table (try 1 of" in caplog.text
    assert compare(databases).equal
