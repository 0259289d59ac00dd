"""Keys of other types than integers (migration_engine/keys.py) in the backfill and phase 1, on the real
Postgres: UUID- and text-keyed entities copy exactly, resume mid-range, lose their ghosts; phase 1
batches a UUID-keyed table; unsupported keys are refused before anything is written; a pass planned
before control-schema migration 006 (bigint bounds) survives the upgrade and resumes."""

from __future__ import annotations

import logging

import pytest

from migration_engine import control_schema, keys, phase1
from migration_engine.backfill import BackfillError, RangeWorker, backfill_settings, plan_entity, store
from migration_engine.backfill.plan import split_ranges
from migration_engine.config import load_config
from tests.backfill_fixtures import compare, connectors
from tests.keys_fixtures import ODD_CODES, assert_exact_copy, keys_config, new_rows, seed
from tests.phase1_fixtures import legacy_conn

SCHEMA = "migration_control"
pytestmark = pytest.mark.timeout(180)


def _conns(databases):
    return databases.connect("legacy"), databases.connect("new")


def _workers(databases, cfg, s, plan, **kw):
    lc, nc = connectors(databases)
    return [RangeWorker(cfg, plan.entity, j.run_id, j.range_no, s, lc, nc, **kw) for j in plan.jobs
            if j.status != "done"]


def _ledger(databases, action):
    return databases.query("legacy", f"SELECT target, details, reason FROM {SCHEMA}.audit_ledger "
                                     "WHERE action = %s ORDER BY id", (action,))


# -- pure parts ------------------------------------------------------------------------------------

def test_copy_text_fields_are_unescaped_without_int():
    assert keys.copy_field(b"12345") == "12345"
    assert keys.copy_field(b"tab\\there\\nnew\\\\back") == "tab\there\nnew\\back"
    assert keys.copy_field(b"\\101\\x42c") == "ABc"  # octal and hex escapes COPY FROM accepts
    assert keys.copy_field("Äpfel".encode()) == "Äpfel"
    assert keys.last_line_key(b"1\ta\n22\tb\n") == b"22" and keys.first_field(b"x\\ty\tz\n") == b"x\\ty"


def test_ranges_are_cut_at_server_ordered_quantiles_for_any_key():
    uuid_key = keys.Key("id", "uuid", "uuid")
    qs = ["b", "b", "c", "e"]  # server order; equal neighbours collapse, a cut at key_max is dropped
    assert split_ranges("a", "e", qs, uuid_key) == [(None, "b"), ("b", "c"), ("c", "e")]
    int_key = keys.Key("id", "bigint", "int8")
    assert split_ranges(1, 100, [25, 50, 50, 75], int_key) == [(0, 25), (25, 50), (50, 75), (75, 100)]
    assert split_ranges(7, 7, [7], int_key) == [(6, 7)]


# -- the backfill on UUID and text keys --------------------------------------------------------------

@pytest.mark.parametrize("entity", ["orders", "codes"])
def test_uuid_and_text_keyed_entities_backfill_exactly(databases, keyed_tables, entity):
    t = keyed_tables[entity]
    seed(databases, 3000)
    cfg = keys_config()
    legacy, new = _conns(databases)
    s = backfill_settings(cfg, parallelism=3, batch_size=250, max_batch_size=250)
    plan = plan_entity(legacy, new, cfg, entity, s)
    (in_scope,) = databases.query("legacy", f"SELECT count(*) FROM {t.old_table} WHERE status = 'live'")[0]
    jobs = plan.jobs
    assert len(jobs) == 3 and plan.rows_total == in_scope == sum(j.rows_total for j in jobs)
    assert jobs[0].key_lo is None and jobs[-1].key_hi == plan.key_max  # open first range, no "min - 1"
    assert all(a.key_hi == b.key_lo for a, b in zip(jobs, jobs[1:], strict=False))
    assert max(j.rows_total for j in jobs) - min(j.rows_total for j in jobs) <= 2
    stored = databases.query("legacy", f"SELECT key_type, key_min, key_max FROM {SCHEMA}.backfill_runs")
    assert stored == [({"orders": "uuid", "codes": "varchar"}[entity], plan.key_min, plan.key_max)]
    results = [w.run() for w in _workers(databases, cfg, s, plan)]
    assert all(r.status == "done" for r in results) and sum(r.rows_read for r in results) == in_scope
    assert sum(r.batches for r in results) >= in_scope // 250  # many keyset pages, not one
    assert assert_exact_copy(databases, t) == in_scope
    if entity == "codes":
        assert set(ODD_CODES) <= set(new_rows(databases, t))  # escaped in COPY text, copied as they are
    ranges = store.ranges(legacy, SCHEMA, plan.run_id)
    assert all(r.done and r.last_key == r.key_hi for r in ranges), ranges
    # a second pass changes nothing
    again = plan_entity(legacy, new, cfg, entity, s, restart=True)
    assert sum(r.rows_written for r in (w.run() for w in _workers(databases, cfg, s, again))) == 0
    assert_exact_copy(databases, t)
    legacy.close()
    new.close()


@pytest.mark.parametrize("entity", ["orders", "codes"])
def test_an_interrupted_range_resumes_from_its_text_checkpoint(databases, keyed_tables, entity):
    t = keyed_tables[entity]
    seed(databases, 2000)
    cfg = keys_config()
    legacy, new = _conns(databases)
    s = backfill_settings(cfg, parallelism=1, batch_size=100, max_batch_size=100)
    plan = plan_entity(legacy, new, cfg, entity, s)
    lc, nc = connectors(databases)
    batches = {"n": 0}

    def stop_after_three() -> bool:
        batches["n"] += 1
        return batches["n"] > 3

    first = RangeWorker(cfg, entity, plan.run_id, 0, s, lc, nc, should_stop=stop_after_three).run()
    assert first.status == "stopped" and first.rows_read == 300
    rng = store.get_range(legacy, SCHEMA, plan.run_id, 0)
    legacy.commit()
    assert rng.status == "running" and rng.rows_read == 300 and rng.last_key is not None
    (behind,) = databases.query("legacy", f"SELECT count(*) FROM {t.old_table} WHERE status = 'live' "
                                          f"AND {t.key} <= %s", (rng.last_key,))[0]
    assert behind == 300  # the checkpoint is the 300th in-scope key in the column's own order
    assert len(new_rows(databases, t)) == 300
    second = RangeWorker(cfg, entity, plan.run_id, 0, s, lc, nc).run()
    assert second.status == "done" and first.rows_read + second.rows_read == plan.rows_total
    assert assert_exact_copy(databases, t) == plan.rows_total
    started = _ledger(databases, "backfill_range_started")
    assert [r[2] for r in started] == ["started", "resumed from checkpoint"]
    assert started[1][1]["resume_from"] == rng.last_key
    legacy.close()
    new.close()


@pytest.mark.parametrize("entity", ["orders", "codes"])
def test_ghosts_in_a_uuid_or_text_range_are_deleted(databases, keyed_tables, entity):
    t = keyed_tables[entity]
    seed(databases, 1000)
    cfg = keys_config()
    legacy, new = _conns(databases)
    s = backfill_settings(cfg, parallelism=2, batch_size=200, max_batch_size=200)
    plan = plan_entity(legacy, new, cfg, entity, s)
    # ghosts: new rows whose old row does not exist (keys inside the planned key space), one whose old
    # row is out of scope while the new row is in scope, and one out of scope on both sides (kept)
    inside = databases.query("legacy", f"SELECT {t.key}::text FROM {t.old_table} ORDER BY {t.key} "
                                       "OFFSET 100 LIMIT 3")
    hidden = databases.query("legacy", f"SELECT {t.key}::text FROM {t.old_table} WHERE status = 'hidden' "
                                       f"ORDER BY {t.key} LIMIT 2")
    doomed = [k for (k,) in inside]
    databases.query("legacy", f"DELETE FROM {t.old_table} WHERE {t.key}::text = ANY(%s)", (doomed,))
    for k in doomed:
        databases.query("new", f"INSERT INTO {t.new_table} ({t.legacy_id}, title, amount, status, updated_at) "
                               "VALUES (%s, 'ghost', 1, 'LIVE', now())", (k,))
    (in_scope_ghost,), (kept,) = hidden
    databases.query("new", f"INSERT INTO {t.new_table} ({t.legacy_id}, title, amount, status, updated_at) "
                           "VALUES (%s, 'was live', 1, 'LIVE', now()), (%s, 'hidden too', 1, 'HIDDEN', now())",
                    (in_scope_ghost, kept))
    results = [w.run() for w in _workers(databases, cfg, s, plan)]
    assert sum(r.rows_deleted for r in results) == 4, results
    new_keys = set(new_rows(databases, t))
    assert not set(doomed) & new_keys and in_scope_ghost not in new_keys and kept in new_keys
    (details,) = [d for _t, d, _r in _ledger(databases, "backfill_ghosts_deleted")] or [None]
    deleted = sorted(k for _t, d, _r in _ledger(databases, "backfill_ghosts_deleted")
                     for k in d["deleted_old_rows"] + d["out_of_scope_old_rows"])
    assert deleted == sorted([*doomed, in_scope_ghost]), details
    # everything else is an exact copy (the kept row is the application's: out of scope on both sides)
    databases.query("new", f"DELETE FROM {t.new_table} WHERE {t.legacy_id}::text = %s", (kept,))
    assert_exact_copy(databases, t)
    legacy.close()
    new.close()


# -- refusals before anything is written --------------------------------------------------------------

def _nothing_written(databases, new_table: str) -> None:
    assert databases.query("legacy", f"SELECT (SELECT count(*) FROM {SCHEMA}.backfill_runs), "
                                     f"(SELECT count(*) FROM {SCHEMA}.backfill_ranges), "
                                     f"(SELECT count(*) FROM {SCHEMA}.audit_ledger)")[0] == (0, 0, 0)
    assert databases.query("new", f"SELECT count(*) FROM {new_table}")[0][0] == 0


@pytest.mark.parametrize(("column", "type_name", "why"), [
    ("as_json", "json", "no btree ordering"),
    ("as_float", "double precision", "not supported"),
    ("as_ts", "timestamp with time zone", "not supported"),
])
def test_an_unsupported_key_type_is_refused_naming_it_before_anything_is_written(
        databases, keyed_tables, column, type_name, why):
    databases.query("legacy", "INSERT INTO public.kt_odd_keys (id, as_float, as_json, as_ts) "
                              "SELECT g, g / 3.0, json_build_object('g', g), now() FROM generate_series(1, 50) AS g")
    odd = {"old_table": "public.kt_odd_keys", "new_table": "marketplace.kt_odd_keys", "key": column,
           "legacy_id_column": "legacy_id", "scope": {"column": "status", "values": ["live"]},
           "columns": [{"new": "title", "old": "title"}, {"new": "status", "old": "status"},
                       {"new": "updated_at", "old": "updated_at"}]}
    cfg = keys_config(odd=odd)
    legacy, new = _conns(databases)
    for dry_run in (True, False):
        with pytest.raises(BackfillError, match=rf"entity odd: key column public\.kt_odd_keys\.{column} is of type "
                                                rf"{type_name}: .*{why}.*supported key types: smallint"):
            plan_entity(legacy, new, cfg, "odd", backfill_settings(cfg), dry_run=dry_run)
    _nothing_written(databases, "marketplace.kt_odd_keys")
    legacy.close()
    new.close()


def test_a_legacy_id_column_of_another_kind_than_the_key_is_refused(databases, keyed_tables):
    databases.query("legacy", "INSERT INTO public.kt_odd_keys (id) SELECT g FROM generate_series(1, 20) AS g")
    odd = {"old_table": "public.kt_odd_keys", "new_table": "marketplace.kt_odd_keys", "key": "id",
           "legacy_id_column": "legacy_id", "columns": [{"new": "title", "old": "title"},
                                                        {"new": "updated_at", "old": "updated_at"}]}
    cfg = keys_config(odd=odd)
    legacy, new = _conns(databases)
    with pytest.raises(BackfillError, match=r"key public\.kt_odd_keys\.id is bigint but the new table's "
                                            r"legacy_id_column marketplace\.kt_odd_keys\.legacy_id is text"):
        plan_entity(legacy, new, cfg, "odd", backfill_settings(cfg))
    missing = keys_config(odd={**odd, "key": "nope"})
    with pytest.raises(BackfillError, match=r"key column public\.kt_odd_keys\.nope does not exist"):
        plan_entity(legacy, new, missing, "odd", backfill_settings(missing))
    _nothing_written(databases, "marketplace.kt_odd_keys")
    legacy.close()
    new.close()


# -- phase 1 -------------------------------------------------------------------------------------------

def test_phase1_batches_a_uuid_keyed_table(databases, keyed_tables, caplog):
    seed(databases, 1200)
    cfg = keys_config({"schema_changes": {"required": [{"table": "public.kt_orders", "column": "note",
                                                        "value": "n/a", "not_null": True}]},
                       "ddl": {"update_batch_size": 100}})
    with legacy_conn(databases) as conn, caplog.at_level(logging.INFO, logger="migration_engine.ddl"):
        phase1.prepare(conn, cfg)
        result = phase1.apply_group(conn, cfg, "1.3", actor="test")
    assert result["changed"], result
    (total,) = databases.query("legacy", "SELECT count(*) FROM public.kt_orders")[0]
    assert databases.query("legacy", "SELECT count(*) FROM public.kt_orders WHERE note = 'n/a'")[0][0] == total
    assert databases.query("legacy", "SELECT attnotnull FROM pg_attribute "
                                     "WHERE attrelid = 'public.kt_orders'::regclass AND attname = 'note'") == [(True,)]
    done = [r.getMessage() for r in caplog.records if "backfill public.kt_orders.note: done" in r.getMessage()]
    assert done and f"{-(-total // 100)} batches, {total} rows updated" in done[0], done


def test_phase1_refuses_a_key_it_cannot_order_by(databases, keyed_tables):
    cfg = keys_config({"schema_changes": {"required": [{"table": "public.kt_odd_keys", "column": "amount",
                                                        "value": 0, "not_null": False, "key": "as_json"}]}})
    databases.query("legacy", "INSERT INTO public.kt_odd_keys (id, as_json) VALUES (1, '{}')")
    with legacy_conn(databases) as conn, pytest.raises(Exception, match=r"schema_changes.required\[0\].*"
                                                                        r"as_json.* json"):
        phase1.prepare(conn, cfg)
        phase1.apply_group(conn, cfg, "1.3", actor="test")
    assert databases.query("legacy", "SELECT count(*) FROM public.kt_odd_keys WHERE amount IS NOT NULL") == [(0,)]


# -- migration 006 on a pass planned before it ---------------------------------------------------------

def test_a_pass_planned_before_migration_006_survives_the_upgrade_and_resumes(databases):
    cfg = load_config()
    legacy = databases.connect("legacy")
    control_schema.upgrade(legacy, SCHEMA, target=5)  # the layout before: bigint bounds
    key_min, key_max, total = databases.query(
        "legacy", "SELECT min(id), max(id), count(*) FROM public.marketplace_listings WHERE status = 'ACTIVE'")[0]
    mid = databases.query("legacy", "SELECT id FROM public.marketplace_listings WHERE status = 'ACTIVE' "
                                    "ORDER BY id OFFSET 400 LIMIT 1")[0][0]
    databases.query("legacy", f"""
        INSERT INTO {SCHEMA}.backfill_runs (entity, key_column, key_min, key_max, rows_total, parallelism)
            VALUES ('listings', 'id', {key_min}, {key_max}, {total}, 1);
        INSERT INTO {SCHEMA}.backfill_ranges (run_id, range_no, key_lo, key_hi, last_key, status, rows_total,
                                              rows_read, batches)
            SELECT id, 0, {key_min - 1}, {key_max}, {mid}, 'running', {total}, 401, 3 FROM {SCHEMA}.backfill_runs;
    """)
    applied = control_schema.upgrade(legacy, SCHEMA)
    assert [m.name for m in applied][0] == "006_backfill_generic_keys.sql"  # and every later one
    assert databases.query("legacy", f"SELECT key_type, key_min, key_max FROM {SCHEMA}.backfill_runs") == [
        ("int8", str(key_min), str(key_max))]
    rng = store.get_range(legacy, SCHEMA, 1, 0)
    legacy.commit()
    assert (rng.key_lo, rng.key_hi, rng.last_key, rng.rows_read) == (key_min - 1, key_max, mid, 401)
    # the pass resumes from its old checkpoint: only the rows after it are copied
    s = backfill_settings(cfg, parallelism=1)
    new = databases.connect("new")
    plan = plan_entity(legacy, new, cfg, "listings", s)
    assert plan.resumed and plan.run_id == 1 and plan.jobs[0].last_key == mid
    (result,) = [w.run() for w in _workers(databases, cfg, s, plan)]
    assert result.status == "done" and result.rows_read == total - 401
    c = compare(databases)
    assert c.new_rows == total - 401 and not c.different and not c.orphans, c
    assert set(c.missing) == {k for (k,) in databases.query(
        "legacy", "SELECT id FROM public.marketplace_listings WHERE status = 'ACTIVE' AND id <= %s", (mid,))}
    legacy.close()
    new.close()


# -- rollback scenario 3's sync on a UUID key ---------------------------------------------------------

def test_rollback_sync_carries_creates_updates_and_deletes_back_on_a_uuid_key(databases, keyed_tables):
    from migration_engine.rollback import sync

    t = keyed_tables["orders"]
    seed(databases, 600)
    cfg = keys_config()
    legacy, new = _conns(databases)
    s = backfill_settings(cfg, parallelism=2)
    plan = plan_entity(legacy, new, cfg, "orders", s)
    [w.run() for w in _workers(databases, cfg, s, plan)]
    # after the cutover the application writes the new table only: an update, a create, a delete
    (changed,), (deleted,) = databases.query("new", f"SELECT {t.legacy_id}::text FROM {t.new_table} "
                                                    f"ORDER BY {t.legacy_id} LIMIT 2")
    databases.query("new", f"UPDATE {t.new_table} SET title = 'changed after cutover', updated_at = now() "
                           f"WHERE {t.legacy_id} = %s", (changed,))
    databases.query("new", f"DELETE FROM {t.new_table} WHERE {t.legacy_id} = %s", (deleted,))
    databases.query("new", f"INSERT INTO {t.new_table} (title, amount, status, updated_at) "
                           "VALUES ('created after cutover', 5, 'LIVE', now())")
    stats = sync.ReverseSync(cfg, "orders", legacy, new).run(apply=True)
    assert (stats.updated, stats.linked_now, stats.inserted) == (1, 1, 1), stats
    orphans = sync.find_orphans(cfg, "orders", legacy, new, keep=10)
    assert orphans.keys == [deleted], orphans
    removed = sync.remove_orphans(cfg, "orders", legacy, orphans.keys, lambda conn, removed, rows: None)
    assert removed == [deleted]
    (linked,) = databases.query("new", f"SELECT {t.legacy_id}::text FROM {t.new_table} "
                                       "WHERE title = 'created after cutover'")[0]
    assert linked is not None  # a fresh uuid, also in the old table now
    assert databases.query("legacy", f"SELECT title, status FROM {t.old_table} WHERE id::text = ANY(%s) "
                                     "ORDER BY title", ([changed, linked],)) == [
        ("changed after cutover", "live"), ("created after cutover", "live")]
    assert assert_exact_copy(databases, t) == len(new_rows(databases, t))  # old == new again, nothing extra
    legacy.close()
    new.close()


@pytest.mark.parametrize("entity", ["orders", "codes"])
def test_composed_keyset_predicates_page_like_the_server_orders(databases, keyed_tables, entity):
    """keys.Key.after / up_to / order_by (for SQL composed in code) page exactly like independent SQL."""
    from psycopg2 import sql

    t = keyed_tables[entity]
    seed(databases, 300)
    legacy = databases.connect("legacy")
    schema, table = t.old_table.split(".")
    key = keys.read_key(legacy, schema=schema, table=table, column=t.key, what=f"entity {entity}")
    col = sql.Identifier(t.key)
    page = sql.SQL("SELECT {col}::text FROM {tbl} WHERE {after} AND {upto} ORDER BY {order} LIMIT 50").format(
        col=col, tbl=sql.Identifier(schema, table), after=key.after(col, "lo"), upto=key.up_to(col, "hi"),
        order=key.order_by(col))
    everything = [k for (k,) in databases.query("legacy", f"SELECT {t.key}::text FROM {t.old_table} "
                                                          f"ORDER BY {t.key}")]
    hi = everything[-10]
    walked, lo = [], None
    with legacy.cursor() as cur:
        while True:
            cur.execute(page, {"lo": lo, "hi": hi})
            got = [r[0] for r in cur.fetchall()]
            if not got:
                break
            walked += got
            lo = got[-1]
    legacy.close()
    assert walked == everything[:-9]  # every key up to hi, once, in the server's order


def test_a_checkpoint_moves_only_from_the_mark_it_started_at(databases, keyed_tables):
    """Compare-and-set on the text mark: a stale worker can neither rewind nor skip a range's checkpoint."""
    seed(databases, 300)
    cfg = keys_config()
    legacy, new = _conns(databases)
    plan = plan_entity(legacy, new, cfg, "orders", backfill_settings(cfg, parallelism=1))
    (job,) = plan.jobs
    mid = databases.query("legacy", "SELECT id::text FROM public.kt_orders ORDER BY id OFFSET 50 LIMIT 1")[0][0]
    common = {"rows_read": 1, "rows_written": 1, "rows_deleted": 0, "retries": 0, "batch_size": 10,
              "rows_per_second": None, "eta_seconds": None}
    assert store.checkpoint(legacy, SCHEMA, job.run_id, 0, prev_key=mid, last_key=mid, done=False, **common) is None
    assert store.checkpoint(legacy, SCHEMA, job.run_id, 0, prev_key=None, last_key=mid, done=False,
                            **common) == "running"
    assert store.checkpoint(legacy, SCHEMA, job.run_id, 0, prev_key=None, last_key=mid, done=False, **common) is None
    assert store.checkpoint(legacy, SCHEMA, job.run_id, 0, prev_key=mid, last_key=None, done=True, **common) == "done"
    legacy.commit()
    rng = store.get_range(legacy, SCHEMA, job.run_id, 0)
    assert (rng.last_key, rng.status, rng.rows_read, rng.batches) == (job.key_hi, "done", 2, 2)
    assert store.checkpoint(legacy, SCHEMA, job.run_id, 0, prev_key=job.key_hi, last_key=mid, done=False,
                            **common) is None  # a done range never moves again
    legacy.close()
    new.close()
