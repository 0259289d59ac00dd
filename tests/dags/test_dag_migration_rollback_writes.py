"""The migration_rollback_writes DAG (scenario 3) against real Postgres with the simulator driving traffic."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from tests.cutover_fixtures import Traffic, flags, ledger, prepare_control, set_flags, write_config

pytestmark = pytest.mark.timeout(240)

FAST = {"cutover": {"check_interval": "1s", "min_requests_per_check": 10, "baseline_window": "2m",
                    "flag_propagation": "500ms", "rollback_verify_window": "30s", "quiesce_timeout": "20s"}}


STATUS_BACK = {"active": "ACTIVE", "paused": "PAUSED", "sold": "SOLD", "archived": "ARCHIVED"}


def _new_rows(databases) -> dict:
    rows = databases.query("new", "SELECT s.id, s.legacy_listing_id, p.tenant_id, s.title, s.description, "
                                  "s.price_cents, s.status, s.created_at, s.updated_at "
                                  "FROM marketplace.service_listings s "
                                  "LEFT JOIN marketplace.providers p ON p.id = s.provider_id")
    return {r[0]: r[1:] for r in rows}


def _old_rows(databases) -> dict:
    rows = databases.query("legacy", "SELECT id, tenant_id, title, description, price_cents, status, created_at, "
                                     "updated_at FROM public.marketplace_listings")
    return {r[0]: r[1:] for r in rows}


def _missing_or_different(databases) -> list:
    """Independent of the product code: every new row must be in the old table, reverse-mapped."""
    old = _old_rows(databases)
    problems = []
    for new_id, (legacy_id, tenant_id, title, desc, price, status, created, updated) in _new_rows(databases).items():
        want = (tenant_id, title, desc, price, STATUS_BACK.get(status, status), created, updated)
        if legacy_id is None or old.get(legacy_id) != want:
            problems.append((new_id, legacy_id, want, old.get(legacy_id)))
    return problems


def test_rollback_writes_end_to_end_resumes_after_a_failure(databases, airflow_db, fake_slack, tmp_path,
                                                            monkeypatch):
    from devtools.demo_copy import copy_active_listings
    from devtools.simulator_cli import Mix
    from migration_engine.rollback import sync
    from tests.cutover_fixtures import take_backup
    from tests.hitl_helpers import Answer, run_dag_answering

    side_db = f"side_{databases.legacy_name}"
    cfg = write_config(tmp_path, monkeypatch, {
        **FAST, "backup": {"dir": str(tmp_path / "backups"), "verify_restore": False},
        "backfill": {"batch_size": 400, "min_batch_size": 100},
        "cleanup": {"quiet_period": "1s"},
        "cutover": {**FAST["cutover"], "rollback_side_database": side_db}})
    prepare_control(databases)
    legacy, new = databases.connect("legacy"), databases.connect("new")
    copy_active_listings(legacy, new)  # the backfill
    legacy.close()
    new.close()
    set_flags(databases, dual_write_enabled=True, read_new_pct=100)
    take_backup(cfg)  # the verified pre-cutover backup
    old_ids_before = set(_old_rows(databases))

    traffic = Traffic(databases, rate=80, mix=Mix(create=3, update=4, read=3)).start()
    try:
        time.sleep(1.5)                          # dual-write period: old first, copied to new
        set_flags(databases, write_to_new=True)  # the write cutover (keep_old_sync off)
        cutover_at = datetime.now(UTC)
        time.sleep(3)                            # writes land in the new tables only
        new_rows = _new_rows(databases)
        created_after = [k for k, v in new_rows.items() if v[0] is None]
        changed_after = databases.query("new", "SELECT count(*) FROM marketplace.service_listings "
                                               "WHERE legacy_listing_id IS NOT NULL AND updated_at > %s",
                                        (cutover_at,))[0][0]
        assert len(created_after) > 20 and changed_after > 20, (len(created_after), changed_after)
        # (rows written in the first flag-cache TTL after the switch still went old-first: in sync)
        assert len(_missing_or_different(databases)) > len(created_after) + 10

        # Run 1 dies in the middle of the forward sync: at the third old row written for a listing created
        # after the cutover (its old key was just reserved and linked in the new table, above every old id).
        real_upsert, calls = sync.ReverseSync._upsert, {"n": 0}
        max_old_id = max(_old_rows(databases))

        def flaky_upsert(self, key, values):
            if key > max_old_id:
                calls["n"] += 1
                if calls["n"] == 3:
                    raise RuntimeError("injected failure in the middle of the forward sync")
            return real_upsert(self, key, values)

        monkeypatch.setattr(sync.ReverseSync, "_upsert", flaky_upsert)
        first = run_dag_answering("migration_rollback_writes", Answer("approve_rollback", "Approve"), timeout=120)
        assert first.state == "failed", first.tasks
        assert first.tasks["restore_backup"] == "success" and first.tasks["forward_sync"] == "failed"
        f = flags(databases)
        assert f["maintenance_mode"] is True and f["write_to_new"] is True  # safe: writes refused meanwhile
        (failed,) = ledger(databases, "rollback3.step_failed")
        assert failed[5]["step"] == "forward_sync" and "injected failure" in failed[6]
        half_done = _missing_or_different(databases)
        assert half_done  # some rows are not back yet...
        assert any(legacy_id is not None and have is None for _n, legacy_id, _w, have in half_done)  # linked, no row

        # Run 2 resumes: the restore is not repeated, the sync finishes, verification passes.
        monkeypatch.setattr(sync.ReverseSync, "_upsert", real_upsert)
        second = run_dag_answering("migration_rollback_writes", Answer("approve_rollback", "Approve"), timeout=120)
        assert second.state == "success", second.tasks
        time.sleep(1.5)  # the application writes again, to the old tables (dual-written to the new ones)
    finally:
        traffic.stop()

    f = flags(databases)
    assert (f["maintenance_mode"], f["write_to_new"], f["read_new_pct"], f["keep_old_sync"]) == (False, False, 0, False)
    assert _missing_or_different(databases) == []        # every row written after the cutover is in the old tables
    old_ids = set(_old_rows(databases))
    assert old_ids_before <= old_ids                     # no pre-cutover row lost
    linked_now = {v[0] for k, v in _new_rows(databases).items() if k in created_after}
    assert None not in linked_now and linked_now <= old_ids
    restores = ledger(databases, "rollback3.restore_backup")
    assert len(restores) == 1                            # resumed, not restored twice
    (verified,) = ledger(databases, "rollback3.verify")
    stats = verified[5]["entities"]["listings"]
    assert stats["digest_new"] == stats["digest_old"] and stats["backup_rows_missing"] == 0
    assert stats["backup_rows"] == len(old_ids_before)
    assert ledger(databases, "rollback3.maintenance_off")
    assert databases.query("legacy", "SELECT count(*) FROM pg_database WHERE datname = %s", (side_db,))[0][0] == 1
    post = databases.query("legacy", "SELECT coalesce(sum(requests), 0) FROM migration_control.path_stats "
                                     "WHERE operation = 'write' AND path = 'old' AND bucket >= %s",
                           (cutover_at.replace(second=0, microsecond=0),))[0][0]
    assert post > 0  # writes resumed on the old path after maintenance mode


def test_rollback_writes_carries_creates_updates_and_deletes_back_and_verify_catches_a_miss(
        databases, airflow_db, fake_slack, tmp_path, monkeypatch):
    """Issue 13: 3 created, 3 updated, 3 deleted in the new table after the cutover. A sync that misses the
    deletes fails verify (maintenance stays on); the resumed run makes the old table equal the new one, per
    row, checked by test-side SQL - the deleted listings are ARCHIVED, not ACTIVE again."""
    from devtools.demo_copy import copy_active_listings
    from migration_engine.rollback import writes
    from tests.cutover_fixtures import old_vs_new, post_cutover_writes, take_backup
    from tests.hitl_helpers import Answer, run_dag_answering

    side_db = f"side_{databases.legacy_name}"
    cfg = write_config(tmp_path, monkeypatch, {
        **FAST, "backup": {"dir": str(tmp_path / "backups"), "verify_restore": False},
        "cleanup": {"quiet_period": "1s"},
        "cutover": {**FAST["cutover"], "rollback_side_database": side_db}})
    assert cfg.entities["listings"].rollback_deletes.action == "mark"  # the shipped config
    prepare_control(databases)
    legacy, new = databases.connect("legacy"), databases.connect("new")
    copy_active_listings(legacy, new)
    legacy.close()
    new.close()
    set_flags(databases, dual_write_enabled=True, read_new_pct=100)
    take_backup(cfg)
    set_flags(databases, write_to_new=True)
    changed = post_cutover_writes(databases)
    before = old_vs_new(databases)
    assert len([p for p in before if p[0].startswith("old in-scope")]) == 3 and len(before) == 9, before

    # Run 1: a sync that writes creates and updates back but misses the deletes (the bug of issue 13).
    real_remove = writes._remove_deleted
    monkeypatch.setattr(writes, "_remove_deleted", lambda s, name: {"action": "mark", "found": 0, "removed_now": 0,
                                                                    "removed_total": 0, "examples": []})
    first = run_dag_answering("migration_rollback_writes", Answer("approve_rollback", "Approve"), timeout=120)
    assert first.state == "failed", first.tasks
    assert first.tasks["forward_sync"] == "success" and first.tasks["verify"] == "failed", first.tasks
    (plan,) = ledger(databases, "rollback3.plan")
    assert plan[5]["entities"]["listings"]["deleted_in_new"] == 3
    assert plan[5]["entities"]["listings"]["deleted_rows_become"] == "marked status = 'ARCHIVED'"
    (failed,) = ledger(databases, "rollback3.step_failed")
    assert failed[5]["step"] == "verify", failed
    assert "3 rows of public.marketplace_listings in scope have no live row" in failed[6], failed[6]
    assert "not marked here" in failed[6], failed[6]
    assert "in-scope rows differ" in failed[6], failed[6]
    assert flags(databases)["maintenance_mode"] is True and flags(databases)["write_to_new"] is True
    assert [p[0] for p in old_vs_new(databases)] == ["old in-scope row without a live new row"] * 3

    # Run 2 resumes with the real sync: the deletes are carried back, verify passes both ways.
    monkeypatch.setattr(writes, "_remove_deleted", real_remove)
    second = run_dag_answering("migration_rollback_writes", Answer("approve_rollback", "Approve"), timeout=120)
    assert second.state == "success", second.tasks
    assert old_vs_new(databases) == []
    status = dict(databases.query("legacy", "SELECT id, status FROM public.marketplace_listings WHERE id = ANY(%s)",
                                  (changed["deleted"] + changed["updated"],)))
    assert [status[k] for k in changed["deleted"]] == ["ARCHIVED"] * 3   # not ACTIVE again
    assert status[changed["updated"][0]] == "SOLD"
    (marked,) = ledger(databases, "rollback3.rows_marked")
    assert sorted(marked[5]["keys"]) == sorted(changed["deleted"])
    verified = ledger(databases, "rollback3.verify")
    assert len(verified) == 1, verified                                  # run 1's verify recorded nothing
    stats = verified[0][5]["entities"]["listings"]
    assert (stats["orphans"], stats["updated"], stats["inserted"], stats["unlinked"]) == (0, 0, 0, 0), stats
    assert stats["scope_rows_new"] == stats["scope_rows_old"] and stats["removed_by_rollback"] == 3
    assert stats["scope_checksum_new"] == stats["scope_checksum_old"]
    assert stats["backup_rows_missing"] == 0 and stats["new_rows_counted"] == stats["new_rows"]
    assert len(ledger(databases, "rollback3.restore_backup")) == 1       # resumed, not restored twice
    f = flags(databases)
    assert (f["maintenance_mode"], f["write_to_new"]) == (False, False)


def test_rollback_writes_preflight_refuses_without_cutover_or_backup(databases, tmp_path, monkeypatch):
    from migration_engine.rollback import writes

    cfg = write_config(tmp_path, monkeypatch, FAST)
    prepare_control(databases)
    with pytest.raises(writes.RollbackWritesRefused, match="no write cutover"):
        writes.preflight(cfg, actor="test", context={})
    set_flags(databases, read_new_pct=100, write_to_new=True)
    with pytest.raises(writes.RollbackWritesRefused, match="no verified backup taken before the write cutover"):
        writes.preflight(cfg, actor="test", context={})
    set_flags(databases, write_to_new=False)
    with pytest.raises(writes.RollbackWritesRefused, match="nothing to roll back"):
        writes.preflight(cfg, actor="test", context={})


def test_dry_run_prints_the_plan_and_changes_nothing(databases, airflow_db, fake_slack, tmp_path, monkeypatch):
    from devtools.demo_copy import copy_active_listings
    from migration_engine.rollback import writes
    from tests.airflow_helpers import run_dag
    from tests.cutover_fixtures import take_backup
    from tests.snapshots import snapshot, unchanged

    side_db = f"side_{databases.legacy_name}"
    cfg = write_config(tmp_path, monkeypatch, {
        **FAST, "backup": {"dir": str(tmp_path / "backups"), "verify_restore": False},
        "cutover": {**FAST["cutover"], "rollback_side_database": side_db}})
    prepare_control(databases)
    legacy, new = databases.connect("legacy"), databases.connect("new")
    copy_active_listings(legacy, new)
    legacy.close()
    new.close()
    set_flags(databases, dual_write_enabled=True, read_new_pct=100)
    take_backup(cfg)
    set_flags(databases, write_to_new=True)
    databases.query("new", "UPDATE marketplace.service_listings SET title = title || ' (changed)' "
                           "WHERE id IN (SELECT id FROM marketplace.service_listings ORDER BY id LIMIT 3)")
    gone = [r[0] for r in databases.query("new", "DELETE FROM marketplace.service_listings WHERE id IN (SELECT id "
                                                 "FROM marketplace.service_listings ORDER BY id DESC LIMIT 2) "
                                                 "RETURNING legacy_listing_id")]
    before = [snapshot(databases.legacy_dsn), snapshot(databases.new_dsn)]
    state, tasks = run_dag("migration_rollback_writes", {"dry_run": True})
    assert state == "success" and tasks["show_plan"] == "success", tasks
    assert all(tasks[t] == "skipped" for t in ("preflight", "approve_rollback", "maintenance_on",
                                               "maintenance_off")), tasks
    after = [snapshot(databases.legacy_dsn), snapshot(databases.new_dsn)]
    assert unchanged(before[0], after[0]) == [] and unchanged(before[1], after[1]) == []
    assert databases.query("legacy", "SELECT count(*) FROM pg_database WHERE datname = %s", (side_db,))[0][0] == 0
    # The plan: the flag UPDATEs, the side-database SQL and pg_restore commands, the rows the sync would write.
    plan = writes.dry_run_plan(cfg)
    by_id = {s["step_id"].split(".", 2)[-1]: s for s in plan["steps"]}
    assert "UPDATE" in by_id["maintenance_on.maintenance_mode"]["executed"][0]
    restore = by_id["restore_backup"]["executed"][0]
    assert "CREATE DATABASE" in restore and "pg_restore" in restore and side_db in restore
    sync_plan = by_id["forward_sync"]["executed"][0]
    assert "3 rows of marketplace.service_listings differ" in sync_plan
    assert "2 rows of public.marketplace_listings in scope have no live row" in sync_plan
    assert "UPDATE" in sync_plan and "'ARCHIVED'" in sync_plan and all(str(k) in sync_plan for k in gone)
    assert by_id["verify"]["executed"] == []
    assert [k for k in by_id if k.startswith("writes_to_old")] == [
        "writes_to_old.keep_old_sync", "writes_to_old.write_to_new", "writes_to_old.read_new_pct"]
    assert flags(databases)["maintenance_mode"] is False and flags(databases)["write_to_new"] is True
