"""migration_engine.phase1 on its own: the rollback plan's data-loss guard, engine-level apply/revert."""

from __future__ import annotations

import pytest

from migration_engine import phase1
from migration_engine.config import load_config
from migration_engine.steps import RevertRefused
from tests.phase1_fixtures import apply_phase1, catalog_snapshot, diff, legacy_conn


def test_rollback_refuses_to_drop_application_data(databases, airflow_db):
    cfg = load_config()
    with legacy_conn(databases) as conn, pytest.raises(RevertRefused, match="nothing recorded to roll back"):
        phase1.rollback_plan(conn, cfg, allow_data_loss=False)
    apply_phase1(databases, cfg, verify=False)
    databases.query("legacy", "UPDATE contacts SET marketplace_user_id = 7 WHERE id <= 3")
    databases.query("legacy", "UPDATE tenants SET marketplace_payment_mode = 'stripe' WHERE id = 1")
    with legacy_conn(databases) as conn, pytest.raises(RevertRefused, match=r"contacts.marketplace_user_id \(3 rows\).*"
                                            r"tenants.marketplace_payment_mode \(1 rows\)|"
                                            r"tenants.marketplace_payment_mode \(1 rows\).*"
                                            r"contacts.marketplace_user_id \(3 rows\)"):
        phase1.rollback_plan(conn, cfg, allow_data_loss=False)
    with legacy_conn(databases) as conn:
        plan = phase1.rollback_plan(conn, cfg, allow_data_loss=True)
    assert plan["data_at_risk"] == {"public.contacts.marketplace_user_id": 3,
                                    "public.tenants.marketplace_payment_mode": 1}
    assert 'DROP INDEX CONCURRENTLY IF EXISTS "public"."idx_contacts_marketplace_user_tenant";' in plan["plan"]


def test_dry_run_plan_apply_and_revert_groups_on_a_connection(databases):
    """The engine API the DAGs' tasks wrap: plan sends nothing, apply+verify, revert restores."""
    cfg = load_config()
    before = catalog_snapshot(databases)
    with legacy_conn(databases) as conn:
        phase1.prepare(conn, cfg)
        planned = phase1.apply_group(conn, cfg, "1.1", actor="test", dry_run=True)
        assert planned["dry_run"] and "ADD COLUMN IF NOT EXISTS" in planned["plan"]
        assert catalog_snapshot(databases) == before
        applied = phase1.apply_group(conn, cfg, "1.1", actor="test")
        assert applied["changed"]
        assert phase1.apply_group(conn, cfg, "1.1", actor="test")["changed"] is False
        reverted = phase1.revert_group(conn, cfg, "1.1", actor="test")
        assert all(s["action"] == "revert" for s in reverted["steps"])
        assert phase1.verify_rollback(conn, cfg, actor="test")["steps_checked"] == 8
    assert catalog_snapshot(databases) == before, diff(before, catalog_snapshot(databases))
