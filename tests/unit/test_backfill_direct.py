"""The backfill's direct COPY path against real Postgres: a batch into an empty key range is COPY'd
straight into the target, its lookup resolved on the legacy side from a map of the lookup table.

The contract is the staged path's result: the same rows (checked with the tests' own SQL, with a
transform and the provider lookup), a lookup value the map lacks resolved in the target as always
(never a NULL the staged path would not write), a dual-write racing the COPY settled by the version
rule. Which path wrote a batch is what the engine records (``RangeResult.write_paths``, also in the
``backfill_range_done`` ledger entry), never a timing.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from migration_engine.backfill import RangeWorker, backfill_settings, plan_entity
from migration_engine.config import parse_config
from tests.backfill_fixtures import add_listings, compare, connectors

SCHEMA = "migration_control"
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)

# the shipped listings mapping plus two transforms: a default and a cast the direct path's COPY
# text must carry exactly as the staged path's INSERT ... SELECT does
EXPECTED_OLD = """
SELECT id, md5(concat_ws('|', title, coalesce(description, 'none'), price_cents, lower(status), created_at,
                         updated_at, tenant_id))
FROM public.marketplace_listings WHERE status = 'ACTIVE'
"""
ACTUAL_NEW = """
SELECT sl.legacy_listing_id, md5(concat_ws('|', sl.title, sl.description, sl.price_cents, sl.status, sl.created_at,
                                           sl.updated_at, p.tenant_id))
FROM marketplace.service_listings AS sl LEFT JOIN marketplace.providers AS p ON p.id = sl.provider_id
"""
ROWS = ("SELECT legacy_listing_id, provider_id, title, description, price_cents, status, created_at, updated_at "
        "FROM marketplace.service_listings ORDER BY legacy_listing_id")


@pytest.fixture
def cfg():
    raw = yaml.safe_load((ROOT / "include" / "migration.yaml").read_text())
    for c in raw["entities"]["listings"]["columns"]:
        if c["new"] == "description":
            c["default"] = "none"
        if c["new"] == "price_cents":
            c["cast"] = "integer"  # the target column is bigint: an assignment cast staged, text input direct
    return parse_config(raw)


def _pass(databases, cfg, *, restart=False, **overrides):
    legacy, new = databases.connect("legacy"), databases.connect("new")
    try:
        s = backfill_settings(cfg, parallelism=2, batch_size=200, min_batch_size=200, max_batch_size=200,
                              **overrides)
        plan = plan_entity(legacy, new, cfg, "listings", s, restart=restart)
    finally:
        legacy.close()
        new.close()
    lc, nc = connectors(databases)
    return [RangeWorker(cfg, "listings", j.run_id, j.range_no, s, lc, nc).run() for j in plan.jobs]


def _paths(results) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        for k, v in r.write_paths.items():
            out[k] = out.get(k, 0) + v
    return out


def _expected_equal(databases) -> None:
    old = dict(databases.query("legacy", "SET TimeZone = 'UTC';" + EXPECTED_OLD))
    new = dict(databases.query("new", "SET TimeZone = 'UTC';" + ACTUAL_NEW))
    assert len(new) == len(old) and new == old, {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}


def test_an_empty_range_is_copied_directly_and_the_rows_are_the_staged_paths(databases, backfill_conns, cfg,
                                                                             caplog):
    add_listings(databases, 1500)
    databases.query("legacy", "UPDATE public.marketplace_listings SET description = NULL WHERE id % 5 = 0")
    caplog.set_level("INFO", logger="migration_engine.backfill.engine")
    results = _pass(databases, cfg)
    assert all(r.status == "done" for r in results)
    paths = _paths(results)
    batches = sum(r.batches for r in results)
    assert set(paths) == {"copy"} and batches - len(results) <= paths["copy"] <= batches, (paths, batches)
    assert any("direct COPY on" in r.getMessage() and "provider_id" in r.getMessage() for r in caplog.records)
    done = databases.query("legacy", f"SELECT details FROM {SCHEMA}.audit_ledger WHERE action = 'backfill_range_done'")
    assert sorted(d["write_paths"]["copy"] for (d,) in done) == sorted(r.write_paths["copy"] for r in results)
    _expected_equal(databases)
    (nulls,) = databases.query("new", "SELECT count(*) FROM marketplace.service_listings "
                                      "WHERE provider_id IS NULL OR description IS NULL")[0]
    assert nulls == 0
    direct_rows = databases.query("new", ROWS)

    # the same pass through the stage (direct COPY off) writes exactly the same rows
    databases.query("new", "TRUNCATE marketplace.service_listings")
    staged = _pass(databases, cfg, restart=True, direct_copy=False)
    assert set(_paths(staged)) == {"insert"}, _paths(staged)
    assert databases.query("new", ROWS) == direct_rows
    _expected_equal(databases)


def test_a_lookup_row_added_after_the_map_was_read_is_resolved_the_staged_way(databases, backfill_conns, cfg,
                                                                              monkeypatch):
    """The map is read when the range starts; a provider created after that (for a new tenant whose
    listings the range then reads) is a miss: that batch is read again the staged way and resolved
    in the target - the new provider, not NULL - and the map is read again, so later batches are
    direct again."""
    from migration_engine.backfill import engine

    (tenant,) = databases.query("legacy", "INSERT INTO public.tenants (name, created_at) VALUES ('late', now()) "
                                          "RETURNING id")[0]
    add_listings(databases, 1000)
    databases.query("legacy", "UPDATE public.marketplace_listings SET tenant_id = %s "
                              "WHERE id %% 37 = 0 AND status = 'ACTIVE'", (tenant,))
    real_setup = engine.RangeWorker._direct_setup
    created: list[int] = []

    def setup(self, new):
        direct = real_setup(self, new)
        if not created:  # the first range has read its map: now the provider appears
            created.append(databases.query("new", "INSERT INTO marketplace.providers (tenant_id, display_name) "
                                                  "VALUES (%s, 'late') RETURNING id", (tenant,))[0][0])
        return direct

    monkeypatch.setattr(engine.RangeWorker, "_direct_setup", setup)
    monkeypatch.setattr(engine, "MAP_REFRESH_SECONDS", 0.0)
    legacy, new = backfill_conns
    s = backfill_settings(cfg, parallelism=1, batch_size=200, min_batch_size=200, max_batch_size=200)
    plan = plan_entity(legacy, new, cfg, "listings", s)
    lc, nc = connectors(databases)
    (result,) = [RangeWorker(cfg, "listings", j.run_id, j.range_no, s, lc, nc).run() for j in plan.jobs]
    paths = result.write_paths
    assert result.status == "done" and paths["lookup_miss"] == 1 and paths["insert"] == 1, paths
    assert paths["copy"] == result.batches - 1 - (result.rows_read % 200 == 0), (paths, result.batches)
    late = databases.query("new", "SELECT DISTINCT provider_id FROM marketplace.service_listings "
                                  "WHERE legacy_listing_id % 37 = 0")
    assert late == [(created[0],)]
    _expected_equal(databases)


def test_a_tenant_without_provider_gets_null_exactly_as_the_staged_path_writes_it(databases, backfill_conns, cfg):
    """A value the lookup table lacks for good: every batch holding one goes the staged way (LEFT JOIN:
    NULL, as without the direct path); the other batches stay direct."""
    (tenant,) = databases.query("legacy", "INSERT INTO public.tenants (name, created_at) VALUES ('orphan', now()) "
                                          "RETURNING id")[0]
    add_listings(databases, 1500)
    (first, last) = databases.query("legacy", "SELECT min(id), max(id) FROM public.marketplace_listings")[0]
    databases.query("legacy", "UPDATE public.marketplace_listings SET tenant_id = %s, status = 'ACTIVE' "
                              "WHERE id = %s", (tenant, (first + last) // 2))
    results = _pass(databases, cfg)
    paths = _paths(results)
    assert paths.get("lookup_miss") == 1 and paths.get("insert") == 1 and paths.get("copy", 0) >= 3, paths
    rows = databases.query("new", ROWS)
    databases.query("new", "TRUNCATE marketplace.service_listings")
    _pass(databases, cfg, restart=True, direct_copy=False)
    assert databases.query("new", ROWS) == rows
    assert databases.query("new", "SELECT legacy_listing_id FROM marketplace.service_listings "
                                  "WHERE provider_id IS NULL") == [((first + last) // 2,)]


def test_a_big_lookup_table_keeps_the_range_on_the_staged_path(databases, backfill_conns, cfg, caplog):
    add_listings(databases, 500)
    (providers,) = databases.query("new", "SELECT count(*) FROM marketplace.providers")[0]
    caplog.set_level("INFO", logger="migration_engine.backfill.engine")
    results = _pass(databases, cfg, direct_copy_max_lookup_entries=providers - 1)
    assert set(_paths(results)) == {"insert"}, _paths(results)
    assert any("direct COPY off" in r.getMessage() and "marketplace.providers" in r.getMessage()
               and "direct_copy_max_lookup_entries" in r.getMessage() for r in caplog.records)
    assert compare(databases).missing == []
    _expected_equal(databases)


def test_a_direct_batch_the_target_rejects_is_redone_the_staged_way(databases, backfill_conns, cfg, monkeypatch):
    """The direct layout goes through the target's input functions; should the target reject a batch
    the staged path would take, that batch is read and written the staged way and the range's direct
    path is off from then on (here: the direct COPY statement itself is made to fail)."""
    from migration_engine.backfill import engine

    add_listings(databases, 800)
    real_setup = engine.RangeWorker._direct_setup

    def setup(self, new):
        direct = real_setup(self, new)
        if direct is not None:  # a COPY into the target that fails with a data exception on its first row
            direct.copy_target = direct.copy_target.replace('"price_cents", "status"', '"status", "price_cents"')
        return direct

    monkeypatch.setattr(engine.RangeWorker, "_direct_setup", setup)
    results = _pass(databases, cfg)
    paths = _paths(results)
    assert all(r.status == "done" for r in results) and "copy" not in paths, paths
    assert paths["direct_failed"] == len(results) and paths["insert"] >= len(results), paths
    _expected_equal(databases)
