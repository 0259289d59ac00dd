"""migration_phase3_repair, run for real: phase 3 fails on planted rows, the repair fixes them, phase 3 passes.

Also: the approval over ``consistency.repair_max_deletes`` (approve: repaired; reject: nothing changed),
and the dry run (keys and exact SQL listed, both databases unchanged).
"""

from __future__ import annotations

import pytest

from tests.airflow_helpers import xcom
from tests.backfill_fixtures import compare
from tests.consistency_fixtures import (
    ROWS,
    SCHEMA,
    dry_run_changes_nothing,
    plant_repair_faults,
    run_dag_run,
    write_config,
)
from tests.hitl_helpers import Answer, run_dag_answering

pytestmark = pytest.mark.timeout(300)

DAG = "migration_phase3_repair"
PHASE3 = "migration_phase3_data_migration"


def test_phase3_fails_repair_fixes_all_four_kinds_and_phase3_passes(consistent, airflow_db, consistency_config,
                                                                     fake_slack):
    p = plant_repair_faults(consistent)
    dr, tasks = run_dag_run(PHASE3)
    assert dr.state == "failed" and tasks["verdict"] == "failed"
    before = dict(consistent.query("new", ROWS))

    dr, tasks = run_dag_run(DAG)  # 2 deletes: under the default consistency.repair_max_deletes (100)
    assert dr.state == "success", tasks
    assert tasks["approve_deletes"] == "skipped" and tasks["show_plan"] == "skipped"
    assert xcom(dr, "assess")["deletes"] == 2
    assert compare(consistent).equal
    after = dict(consistent.query("new", ROWS))
    assert {k: v for k, v in after.items() if k not in p.keys} == {k: v for k, v in before.items() if k not in p.keys}
    (state,) = consistent.query("legacy", f"SELECT status FROM {SCHEMA}.step_state "
                                          "WHERE step_id LIKE 'phase3.repair.%'")
    assert state[0] == "verified"

    dr, tasks = run_dag_run(PHASE3)
    assert dr.state == "success", tasks


@pytest.fixture
def strict_config(tmp_path, monkeypatch):
    path = write_config(tmp_path / "migration.yaml", data_docs_dir=str(tmp_path / "gx"), repair_max_deletes=1)
    monkeypatch.setenv("MIGRATION_CONFIG", str(path))


def test_more_deletes_wait_for_the_approval_reject_changes_nothing(consistent, airflow_db, strict_config, fake_slack):
    p = plant_repair_faults(consistent)
    dr, _ = run_dag_run(PHASE3)
    assert dr.state == "failed"
    before = dict(consistent.query("new", ROWS))
    rejected = run_dag_answering(DAG, Answer("approve_deletes", "Reject"))
    assert rejected.state == "success" and rejected.tasks["repair"] == "skipped", rejected.tasks
    assert dict(consistent.query("new", ROWS)) == before

    approved = run_dag_answering(DAG, Answer("approve_deletes", "Approve"))
    assert approved.state == "success" and approved.tasks["repair"] == "success", approved.tasks
    assert compare(consistent).equal
    assert {p.ghost, p.out_of_scope}.isdisjoint(dict(consistent.query("new", ROWS)))
    actions = [a for (a,) in consistent.query("legacy", f"SELECT action FROM {SCHEMA}.audit_ledger ORDER BY id")]
    assert "consistency_repair" in actions


def test_dry_run_lists_keys_and_sql_and_changes_nothing(consistent, airflow_db, consistency_config, fake_slack):
    p = plant_repair_faults(consistent)
    dr, _ = run_dag_run(PHASE3)
    assert dr.state == "failed"
    dr, tasks = dry_run_changes_nothing(consistent, DAG)
    assert tasks["assess"] == "skipped" and tasks["repair"] == "skipped"
    text = "\n".join(s for step in xcom(dr, "show_plan")["steps"] for s in step["executed"])
    assert f"insert [{p.missing}]" in text and f"re-copy [{p.changed}]" in text
    assert "FOR UPDATE" in text and 'DELETE FROM "marketplace"."service_listings"' in text
