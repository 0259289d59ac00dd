"""Rollback scenario 3's sync against real Postgres: creates, updates and deletes after the cutover travel back.

The old table is compared with the new table's state by test-side SQL (``old_vs_new``), not by the
product's own walk; the product's checks (differences, orphans, in-scope counts and checksums) must
find every planted difference.
"""

from __future__ import annotations

import pytest

from tests.cutover_fixtures import old_vs_new, post_cutover_writes


@pytest.fixture
def tables(databases):
    """Legacy + new after the backfill, then the application's post-cutover creates/updates/deletes."""
    from devtools.demo_copy import copy_active_listings

    legacy, new = databases.connect("legacy"), databases.connect("new")
    copy_active_listings(legacy, new)
    legacy.close()
    new.close()
    writes = post_cutover_writes(databases)
    yield databases, writes


def _cfg(**deletes):
    from migration_engine.config import RollbackDeletes, load_config

    cfg = load_config()
    if not deletes:
        return cfg
    e = cfg.entities["listings"].model_copy(update={"rollback_deletes": RollbackDeletes(**deletes)})
    return cfg.model_copy(update={"entities": {"listings": e}})


def _sync(cfg, databases, *, apply: bool = True):
    from migration_engine.rollback import sync

    legacy, new = databases.connect("legacy"), databases.connect("new")
    try:
        stats = sync.ReverseSync(cfg, "listings", legacy, new).run(apply=apply)
        orphans = sync.find_orphans(cfg, "listings", legacy, new, keep=100)
        return stats, orphans
    finally:
        legacy.close()
        new.close()


def _remove(cfg, databases, keys):
    from migration_engine.rollback import sync

    recorded = []
    legacy = databases.connect("legacy")
    try:
        removed = sync.remove_orphans(cfg, "listings", legacy, keys,
                                      lambda conn, removed, rows: recorded.append((removed, rows)))
    finally:
        legacy.close()
    return removed, recorded


def _old(databases, ids):
    return {r[0]: r[1] for r in databases.query(
        "legacy", "SELECT id, status FROM public.marketplace_listings WHERE id = ANY(%s)", (list(ids),))}


def test_creates_updates_and_deletes_travel_back_deleted_rows_are_marked(tables):
    databases, writes = tables
    cfg = _cfg()  # the shipped config: a deleted listing becomes ARCHIVED in the old table
    assert len(old_vs_new(databases)) >= 9          # 3 created, 3 updated, 3 deleted: all differ now
    stats, orphans = _sync(cfg, databases)
    assert (stats.linked_now, stats.updated) == (3, 3), stats.as_dict()
    assert orphans.orphans == 3 and sorted(orphans.keys) == sorted(writes["deleted"])
    assert [p[0] for p in old_vs_new(databases)] == ["old in-scope row without a live new row"] * 3

    removed, recorded = _remove(cfg, databases, orphans.keys)
    assert sorted(removed) == sorted(writes["deleted"]) and recorded[0][0] == removed
    assert old_vs_new(databases) == []
    assert _old(databases, writes["deleted"]) == dict.fromkeys(writes["deleted"], "ARCHIVED")
    assert _old(databases, writes["updated"])[writes["updated"][0]] == "SOLD"

    # The verification walks find nothing, both ways, and the in-scope counts and checksums agree.
    stats, orphans = _sync(cfg, databases, apply=False)
    assert stats.differences == 0 and stats.digest_new == stats.digest_old and orphans.orphans == 0
    assert stats.scope_rows_new == orphans.scope_rows_old > 0
    assert stats.scope_checksum_new == orphans.scope_checksum_old
    # Idempotent: a second sync writes nothing and finds nothing to remove.
    again, orphans = _sync(cfg, databases)
    assert (again.updated, again.inserted, again.linked_now, orphans.orphans) == (0, 0, 0, 0)


def test_delete_mode_is_all_or_nothing_and_names_the_referencing_constraint(tables):
    from migration_engine.rollback.sync import SyncError

    databases, writes = tables
    cfg = _cfg(action="delete")
    _stats, orphans = _sync(cfg, databases)
    before = databases.query("legacy", "SELECT * FROM public.marketplace_listings ORDER BY id")
    with pytest.raises(SyncError, match="marketplace_listing_images.*nothing was deleted.*rollback_deletes"):
        _remove(cfg, databases, orphans.keys)
    assert databases.query("legacy", "SELECT * FROM public.marketplace_listings ORDER BY id") == before

    # Only one of the three still referenced: the other two must not have been deleted either.
    databases.query("legacy", "DELETE FROM public.marketplace_listing_images WHERE listing_id = ANY(%s)",
                    (writes["deleted"][:2],))
    with pytest.raises(SyncError, match="constraint"):
        _remove(cfg, databases, orphans.keys)
    assert set(_old(databases, writes["deleted"])) == set(writes["deleted"])

    databases.query("legacy", "DELETE FROM public.marketplace_listing_images WHERE listing_id = ANY(%s)",
                    (writes["deleted"],))
    removed, recorded = _remove(cfg, databases, orphans.keys)
    assert sorted(removed) == sorted(writes["deleted"]) and _old(databases, writes["deleted"]) == {}
    assert sorted(row["id"] for row in recorded[0][1]) == sorted(writes["deleted"])  # the rows as they were
    assert old_vs_new(databases) == []
    stats, orphans = _sync(cfg, databases, apply=False)
    assert stats.differences == 0 and orphans.orphans == 0
    assert (stats.scope_rows_new, stats.scope_checksum_new) == (orphans.scope_rows_old, orphans.scope_checksum_old)


def test_more_deletes_than_the_limit_refuse_before_anything_changes(tables):
    from migration_engine.config import load_config
    from migration_engine.rollback import sync

    databases, writes = tables
    base = load_config()
    cfg = base.model_copy(update={"cutover": base.cutover.model_copy(update={"rollback_max_deletes": 2})})
    _stats, orphans = _sync(cfg, databases)
    assert sync.too_many(cfg, "listings", orphans.orphans) and "rollback_max_deletes = 2" in sync.too_many(
        cfg, "listings", orphans.orphans)
    with pytest.raises(sync.TooManyDeletes, match="3 rows of public.marketplace_listings"):
        _remove(cfg, databases, orphans.keys)
    assert _old(databases, writes["deleted"]) == dict.fromkeys(writes["deleted"], "ACTIVE")


@pytest.mark.parametrize("plant", ["old_extra_in_scope", "old_changed", "old_missing", "new_unlinked"])
def test_the_checks_catch_a_planted_difference(tables, plant):
    databases, writes = tables
    cfg = _cfg()
    _stats, orphans = _sync(cfg, databases)
    _remove(cfg, databases, orphans.keys)
    assert old_vs_new(databases) == []
    victim = writes["updated"][1]
    if plant == "old_extra_in_scope":      # an ACTIVE old row nothing in the new table knows
        databases.query("legacy", "INSERT INTO public.marketplace_listings (tenant_id, title, price_cents, status) "
                                  "SELECT tenant_id, 'planted', 1, 'ACTIVE' FROM public.marketplace_listings "
                                  "WHERE id = %s", (victim,))
    elif plant == "old_changed":
        databases.query("legacy", "UPDATE public.marketplace_listings SET price_cents = price_cents + 7 "
                                  "WHERE id = %s", (victim,))
    elif plant == "old_missing":
        databases.query("legacy", "DELETE FROM public.marketplace_listing_images WHERE listing_id = %s", (victim,))
        databases.query("legacy", "DELETE FROM public.marketplace_listings WHERE id = %s", (victim,))
    else:                                  # a new row without an old key
        databases.query("new", "UPDATE marketplace.service_listings SET legacy_listing_id = NULL "
                               "WHERE legacy_listing_id = %s", (victim,))
    assert old_vs_new(databases) != []    # the independent check sees it ...
    stats, orphans = _sync(cfg, databases, apply=False)
    found = {"differences": stats.differences, "orphans": orphans.orphans,
             "digest": stats.digest_new != stats.digest_old,
             "scope": (stats.scope_rows_new, stats.scope_checksum_new) != (orphans.scope_rows_old,
                                                                           orphans.scope_checksum_old)}
    # ... and so does the product's verification (the in-scope checksum catches every kind on its own).
    assert found["scope"], found
    expected = {"old_extra_in_scope": "orphans", "old_changed": "differences", "old_missing": "differences",
                "new_unlinked": "differences"}[plant]
    assert found[expected], found
    if plant == "new_unlinked":
        assert found["orphans"] == 1, found  # its old row is no longer linked either


def test_rollback_deletes_config_is_validated():
    from pydantic import ValidationError

    from migration_engine.config import RollbackDeletes, load_config

    with pytest.raises(ValidationError, match="needs column and value"):
        RollbackDeletes(action="mark", column="status")
    with pytest.raises(ValidationError, match="only apply to action 'mark'"):
        RollbackDeletes(action="delete", column="status", value="X")
    entity = load_config().entities["listings"].model_dump(by_alias=True)
    entity["rollback_deletes"] = {"action": "mark", "column": "status", "value": "ACTIVE"}
    with pytest.raises(ValidationError, match="would still count as migrated"):
        type(load_config().entities["listings"]).model_validate(entity)


def test_a_failed_record_leaves_nothing_removed(tables):
    """The removal and its record commit together: if the record cannot be written, no row is removed."""
    from migration_engine.rollback import sync

    databases, writes = tables
    cfg = _cfg()
    _stats, orphans = _sync(cfg, databases)
    legacy = databases.connect("legacy")

    def record(conn, removed, rows):
        raise RuntimeError("ledger unavailable")

    try:
        with pytest.raises(RuntimeError, match="ledger unavailable"):
            sync.remove_orphans(cfg, "listings", legacy, orphans.keys, record)
    finally:
        legacy.close()
    assert _old(databases, writes["deleted"]) == dict.fromkeys(writes["deleted"], "ACTIVE")


def test_preflight_counts_the_deletes_and_refuses_a_bad_mark_or_too_many(tables, tmp_path, monkeypatch):
    from migration_engine.config import RollbackDeletes
    from migration_engine.rollback import writes
    from tests.cutover_fixtures import prepare_control, set_flags, take_backup, write_config

    databases, _writes = tables
    cfg = write_config(tmp_path, monkeypatch, {"backup": {"dir": str(tmp_path / "backups"), "verify_restore": False},
                                               "cutover": {"rollback_side_database": f"side_{databases.legacy_name}"}})
    prepare_control(databases)
    set_flags(databases, dual_write_enabled=True, read_new_pct=100)
    take_backup(cfg)
    set_flags(databases, write_to_new=True)
    plan = writes.preflight(cfg, actor="test", context={})
    info = plan["entities"]["listings"]
    assert (info["deleted_in_new"], info["deleted_rows_become"]) == (3, "marked status = 'ARCHIVED'")

    limited = cfg.model_copy(update={"cutover": cfg.cutover.model_copy(update={"rollback_max_deletes": 2})})
    with pytest.raises(writes.RollbackWritesRefused, match="rollback_max_deletes = 2"):
        writes.preflight(limited, actor="test", context={})
    bad = cfg.entities["listings"].model_copy(update={"rollback_deletes": RollbackDeletes(
        action="mark", column="no_such_column", value="X")})
    with pytest.raises(writes.RollbackWritesRefused, match="cannot look for rows deleted.*no_such_column"):
        writes.preflight(cfg.model_copy(update={"entities": {"listings": bad}}), actor="test", context={})
