"""How the diff cuts an integer key space into chunks: balanced by rows, not by key arithmetic.

A few keys far above the rest (rows only in the new table at legacy ids 50 000 000+, as the diff
bench plants them) made the old min/max arithmetic put every row into the first chunk, so one
worker hashed the whole table while the others idled. Chunk row counts are asserted (never timings).
"""

from __future__ import annotations

import psycopg2
import pytest

from migration_engine.consistency.diff import DENSE_ENOUGH, Chunk, dense_enough, diff_entity, entity_chunks, work_order
from migration_engine.consistency.plan import build_entity_plan
from migration_engine.consistency.sessions import SessionPool
from tests.consistency_fixtures import make_config

pytestmark = pytest.mark.timeout(180)

FAR = 50_000_000
CHUNKING = {"chunk_size": 400, "bisect_min_rows": 20, "bisect_factor": 4, "parallelism": 2}


def _plant_far_extras(dbs, n: int = 10) -> list[int]:
    keys = [FAR + i for i in range(n)]
    dbs.query("new", """
        INSERT INTO marketplace.service_listings (legacy_listing_id, provider_id, title, price_cents, status)
        SELECT k, 1, 'only in new', 100, 'active' FROM unnest(%s::bigint []) AS k""", (keys,))
    return keys


def _chunks(cfg, dbs):
    timeout = cfg.consistency.statement_timeout
    with SessionPool(lambda: psycopg2.connect(dbs.legacy_dsn), timeout, label="legacy") as old, \
            SessionPool(lambda: psycopg2.connect(dbs.new_dsn), timeout, label="new") as new:
        plan = build_entity_plan(cfg, "listings", old.get(), new.get())
        return entity_chunks(cfg, plan, old, new)


def _rows_per_chunk(dbs, side: str, chunks) -> list[int]:
    table, key = ("public.marketplace_listings", "id") if side == "legacy" else \
        ("marketplace.service_listings", "legacy_listing_id")
    return [dbs.query(side, f"SELECT count(*) FROM {table} WHERE {key} IS NOT NULL "
                            f"AND (%(lo)s::bigint IS NULL OR {key} >= %(lo)s) "
                            f"AND (%(hi)s::bigint IS NULL OR {key} < %(hi)s)", {"lo": ch.lo, "hi": ch.hi})[0][0]
            for ch in chunks]


def test_a_skewed_integer_key_space_is_cut_into_chunks_of_balanced_row_counts(consistent):
    extras = _plant_far_extras(consistent)
    cfg = make_config(**CHUNKING)
    chunks, on, nn = _chunks(cfg, consistent)
    assert on > 4 * CHUNKING["chunk_size"]  # enough rows for several chunks
    assert not dense_enough(max(on, nn), 1, FAR + len(extras))

    old_rows = _rows_per_chunk(consistent, "legacy", chunks)
    new_rows = _rows_per_chunk(consistent, "new", chunks)
    assert sum(old_rows) == on and sum(new_rows) == nn  # the chunks cover every key exactly once
    size, fine = CHUNKING["chunk_size"], CHUNKING["bisect_min_rows"]
    assert len(chunks) >= on // size
    # every chunk holds about chunk_size rows of the side the boundaries came from (the last one
    # the remainder); the far extras land in the last, open-ended chunk and make it no bigger than that
    assert max(old_rows) <= size + fine, old_rows
    assert max(new_rows) <= size + fine + len(extras), new_rows
    assert min(old_rows[:-1]) >= size - fine, old_rows
    assert chunks[-1].hi is None and chunks[0].lo is None

    # ... and the diff over those chunks (open-ended edges included) still finds exactly the extras
    r = diff_entity(cfg, "listings", lambda: psycopg2.connect(consistent.legacy_dsn),
                    lambda: psycopg2.connect(consistent.new_dsn))
    assert r.status == "failed"
    assert r.counts == {"missing_in_new": 0, "missing_in_old": len(extras), "changed": 0, "unlinked_in_new": 0}
    assert r.keys("missing_in_old") == extras
    assert r.details["chunks"] == len(chunks)


def test_open_ended_last_chunk_with_more_extras_than_a_leaf_is_bisected(consistent):
    """More far keys than ``bisect_min_rows`` in the open-ended last chunk: split by keys read from
    the server (no arithmetic on an open bound), every extra found."""
    extras = _plant_far_extras(consistent, 3 * CHUNKING["bisect_min_rows"])
    r = diff_entity(make_config(**CHUNKING), "listings", lambda: psycopg2.connect(consistent.legacy_dsn),
                    lambda: psycopg2.connect(consistent.new_dsn))
    assert r.counts["missing_in_old"] == len(extras) and r.keys("missing_in_old") == extras
    assert r.counts["missing_in_new"] == 0 and r.counts["changed"] == 0


def test_dense_integer_keys_are_chunked_by_arithmetic_without_a_scan(consistent):
    cfg = make_config(**CHUNKING)
    chunks, on, nn = _chunks(cfg, consistent)
    lo, hi = chunks[0].lo, chunks[-1].hi
    assert dense_enough(max(on, nn), lo, hi)  # the demo's serial ids, ~70 % ACTIVE copied
    assert all(ch.cuts is None for ch in chunks)  # arithmetic: sub-ranges computed, no boundary scan
    rows = _rows_per_chunk(consistent, "legacy", chunks)
    assert sum(rows) == on
    assert max(rows) <= CHUNKING["chunk_size"] / DENSE_ENOUGH  # the bound dense_enough promises


def test_density_rule():
    assert dense_enough(500, 0, 1000) and dense_enough(1000, 0, 1000)
    assert not dense_enough(499, 0, 1000)
    assert not dense_enough(100_010, 1, 50_000_011)


def test_the_highest_chunk_is_worked_first_and_every_chunk_once():
    chunks = [Chunk(None, 10), Chunk(10, 20), Chunk(20, None)]
    assert work_order(chunks) == [Chunk(20, None), Chunk(None, 10), Chunk(10, 20)]
    assert work_order([]) == [] and work_order(chunks[:1]) == chunks[:1]
