"""The diff engine, reference and count checks, and the run store, against real Postgres."""

from __future__ import annotations

import threading
import time

import psycopg2
import pytest

from migration_engine.consistency import runs, store
from migration_engine.consistency.diff import diff_entity
from migration_engine.consistency.references import check_count, check_reference
from tests.consistency_fixtures import EXTRA_KEY, MISSING_INVOICE, SCHEMA, make_config, plant_faults

pytestmark = pytest.mark.timeout(120)


def _connectors(dbs):
    return {"legacy": lambda: psycopg2.connect(dbs.legacy_dsn), "new": lambda: psycopg2.connect(dbs.new_dsn)}


def _run_all(cfg, dbs):
    connect = _connectors(dbs)
    return {c["name"]: runs.execute_check(cfg, c, connect) for c in runs.plan_checks(cfg)}


def test_clean_data_passes_every_check(consistent):
    cfg = make_config()
    results = _run_all(cfg, consistent)
    assert set(results) == {"listings", "transactions_to_invoices", "contacts_to_marketplace_users", "transactions"}
    for name, r in results.items():
        assert r.status == "passed", (name, r.message)
    listings = results["listings"]
    active = consistent.counts["active_listings"]
    assert listings.old_count == listings.new_count == active == consistent.copied
    assert results["transactions_to_invoices"].details["rows_checked"] > 0
    assert results["contacts_to_marketplace_users"].details["rows_checked"] == 50
    assert results["transactions"].old_count == results["transactions"].new_count > 0


# Default chunking (one chunk holds the whole test table) and tiny chunks (many chunks, several
# bisection levels, 3 workers) must find exactly the same keys.
@pytest.mark.parametrize("chunking", [{}, {"chunk_size": 50, "bisect_min_rows": 3, "bisect_factor": 4,
                                           "parallelism": 3}])
def test_planted_faults_are_caught_with_their_exact_keys(consistent, chunking):
    faults = plant_faults(consistent)
    cfg = make_config(**chunking)
    connect = _connectors(consistent)

    listings = diff_entity(cfg, "listings", connect["legacy"], connect["new"])
    assert listings.status == "failed"
    assert listings.counts == {"missing_in_new": 1, "missing_in_old": 1, "changed": 1, "unlinked_in_new": 0}
    assert listings.keys("missing_in_new") == [faults.missing_in_new]
    assert listings.keys("missing_in_old") == [EXTRA_KEY]
    [changed] = listings.first("changed", 10)
    assert changed.key == faults.changed_title and changed.columns == ("title",)
    assert changed.detail["new"] == {"title": "tampered"}
    assert listings.old_count == consistent.copied and listings.new_count == consistent.copied
    if chunking:
        # the extra key (9 000 001) makes the key space sparse: chunks are cut at keys read from the
        # index, and the last, open-ended chunk holds both the extra and the missing row (active[-3])
        assert listings.details["chunks"] > 10 and listings.details["leaf_ranges"] >= 2, listings.details

    orphans = check_reference(cfg, "transactions_to_invoices", connect)
    assert orphans.status == "failed" and orphans.counts == {"orphan": 1}
    [orphan] = orphans.findings
    assert orphan.key == faults.orphan_transaction and orphan.detail["value"] == MISSING_INVOICE
    assert check_reference(cfg, "contacts_to_marketplace_users", connect).passed
    assert check_count(cfg, "transactions", connect).passed


def test_scope_and_lookup_differences_are_changes_not_missing_rows(consistent):
    active = [r[0] for r in consistent.query("legacy", "SELECT id FROM public.marketplace_listings "
                                                       "WHERE status = 'ACTIVE' ORDER BY id LIMIT 3")]
    sold_in_old, wrong_provider, null_desc = active
    consistent.query("legacy", "UPDATE public.marketplace_listings SET status = 'SOLD' WHERE id = %s", (sold_in_old,))
    consistent.query("new", "UPDATE marketplace.service_listings SET provider_id = provider_id + 1 "
                            "WHERE legacy_listing_id = %s", (wrong_provider,))
    consistent.query("new", "UPDATE marketplace.service_listings SET description = NULL "
                            "WHERE legacy_listing_id = %s", (null_desc,))
    cfg = make_config()
    r = diff_entity(cfg, "listings", *_connectors(consistent).values())
    found = {f.key: f for f in r.findings}
    assert set(found) == {sold_in_old, wrong_provider, null_desc}, r.findings
    assert found[sold_in_old].kind == "changed" and found[sold_in_old].columns == ("status",)
    assert found[sold_in_old].detail["old"] == {"status": "sold"} and not found[sold_in_old].detail["old_in_scope"]
    assert found[wrong_provider].columns == ("provider_id",) and "compared_as" in found[wrong_provider].detail
    assert found[null_desc].columns == ("description",)
    assert r.old_count == consistent.copied - 1 and r.new_count == consistent.copied


def test_unlinked_new_rows_are_reported(consistent):
    new_id = consistent.query("new", "INSERT INTO marketplace.service_listings (title, price_cents, status) "
                                     "VALUES ('no legacy id', 1, 'active') RETURNING id")[0][0]
    r = diff_entity(make_config(), "listings", *_connectors(consistent).values())
    assert r.status == "failed" and r.counts["unlinked_in_new"] == 1 and r.keys("unlinked_in_new") == [new_id]


def test_in_flight_difference_is_cleared_by_the_recheck(consistent):
    """A row the dual-write has not reached yet at diff time is not reported once it arrives."""
    key = consistent.query("legacy", "SELECT min(id) FROM public.marketplace_listings WHERE status = 'ACTIVE'")[0][0]
    # the write landed on the old side (written first) and stamped updated_at: not datable as settled
    [(stamp,)] = consistent.query("legacy", "UPDATE public.marketplace_listings SET title = 'renamed', "
                                            "updated_at = now() WHERE id = %s RETURNING updated_at", (key,))
    cfg = make_config(recheck_delay="1500ms")

    def dual_write_arrives():
        time.sleep(0.7)
        consistent.query("new", "UPDATE marketplace.service_listings SET title = 'renamed', updated_at = %s "
                                "WHERE legacy_listing_id = %s", (stamp, key))

    writer = threading.Thread(target=dual_write_arrives)
    writer.start()
    r = diff_entity(cfg, "listings", *_connectors(consistent).values())
    writer.join()
    assert r.status == "passed", r.message
    assert r.details["rechecked_cleared"] == 1


def test_missing_phase1_column_is_a_clear_error(databases):
    cfg = make_config()
    r = check_reference(cfg, "contacts_to_marketplace_users", _connectors(databases))
    assert r.status == "error"
    assert "column public.contacts.marketplace_user_id does not exist" in r.message
    assert "legacy database (connection breederhq_db)" in r.message and "phase 1" in r.message
    c = check_count(cfg, "transactions", _connectors(databases))
    assert c.status == "error" and "public.invoices.is_marketplace_invoice does not exist" in c.message


def test_run_store_and_last_consistency_run(consistent):
    cfg = make_config()
    conn = consistent.connect("legacy")
    try:
        assert store.last_consistency_run(conn, cfg) is None  # tables not created yet: no run
        run_pk = store.start_run(conn, SCHEMA, kind="full", dag_id="d", run_id="r1")
        results = _run_all(cfg, consistent)
        for r in results.values():
            store.record_check(conn, SCHEMA, run_pk, r, max_keys=5)
        rows = store.run_results(conn, SCHEMA, run_pk)
        summary = runs.summarize(cfg, run_pk, "diff", rows, list(results))
        assert summary["status"] == "passed" and summary["checked"] == 4
        # a planned check without a result is an error, not a pass
        missing = runs.summarize(cfg, run_pk, "diff", rows, [*results, "ghost"])
        assert missing["status"] == "error" and missing["failed_checks"] == ["ghost"]
        store.finish_run(conn, SCHEMA, run_pk, status="passed", failed_checks=[], summary=summary)
        last = store.last_consistency_run(conn, cfg)
        assert last.id == run_pk and last.passed and last.kind == "full"
        from datetime import timedelta

        assert last.passed_within(timedelta(hours=2)) and not last.passed_within(timedelta(seconds=-1))
        assert store.last_consistency_run(conn, cfg, kinds=("diff",)) is None
    finally:
        conn.close()


def test_config_section_and_check_names_are_validated():
    from migration_engine.config import ConfigError, parse_config
    from migration_engine.consistency.results import ConsistencyError
    from tests.consistency_fixtures import config_dict

    data = config_dict()
    data["consistency"]["count_parity"] = data["consistency"]["count_parity"] * 2
    with pytest.raises(ConfigError, match="count_parity names must be unique"):
        parse_config(data)
    data = config_dict(recheck_dealy="1s")
    with pytest.raises(ConfigError, match="consistency.recheck_dealy: unknown key"):
        parse_config(data)
    data = config_dict()
    data["consistency"]["count_parity"][0]["name"] = "listings"  # collides with the entity's check
    with pytest.raises(ConsistencyError, match=r"must be unique .* repeated: \['listings', 'listings_count_parity'\]"):
        runs.plan_checks(parse_config(data))
    assert make_config(recheck_delay="4s").consistency.recheck_delay.total_seconds() == 4
