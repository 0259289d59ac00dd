"""migration_phase3_data_migration, run for real with dag.test(): pass, fail with keys, dry run."""

from __future__ import annotations

import pytest

from migration_engine.consistency import store
from tests.airflow_helpers import xcom
from tests.consistency_fixtures import (
    SCHEMA,
    dry_run_changes_nothing,
    make_config,
    planned_sql,
    plant_faults,
    run_dag_run,
)

pytestmark = pytest.mark.timeout(240)

DAG = "migration_phase3_data_migration"


def test_phase3_passes_on_consistent_data(consistent, airflow_db, consistency_config, fake_slack):
    dr, tasks = run_dag_run(DAG)
    assert dr.state == "success", tasks
    assert sorted(t for t in tasks if t.startswith("run_check[")) == [f"run_check[{i}]" for i in range(4)]
    assert all(s == "success" for s in tasks.values()), tasks
    conn = consistent.connect("legacy")
    try:
        last = store.last_consistency_run(conn, make_config(), kinds=("diff",))
    finally:
        conn.close()
    assert last.passed and last.dag_id == DAG
    # the run is one step: applied by finish_run (the fan-out had stored every check), verified by verdict
    (state,) = consistent.query("legacy", f"SELECT status, details FROM {SCHEMA}.step_state "
                                          "WHERE step_id = 'phase3.consistency_run'")
    assert state[0] == "verified"
    assert xcom(dr, "verdict") == {"run_pk": last.id, "status": "passed", "checks": last.summary["checks"]}
    assert fake_slack.messages() == []


def test_phase3_fails_and_names_the_keys(consistent, airflow_db, consistency_config, fake_slack):
    faults = plant_faults(consistent)
    dr, tasks = run_dag_run(DAG)
    assert dr.state == "failed" and tasks["verdict"] == "failed"
    conn = consistent.connect("legacy")
    try:
        last = store.last_consistency_run(conn, make_config(), kinds=("diff",))
    finally:
        conn.close()
    assert last.status == "failed" and last.failed_checks == ["listings", "transactions_to_invoices"]
    listing = next(c for c in last.summary["checks"] if c["name"] == "listings")
    assert listing["sample"] == {"missing_in_new": [str(faults.missing_in_new)],
                                 "missing_in_old": [str(faults.extra_in_new)],
                                 "changed": [f"{faults.changed_title} (title)"]}
    (state,) = consistent.query("legacy", f"SELECT status, details FROM {SCHEMA}.step_state "
                                          "WHERE step_id = 'phase3.consistency_run'")
    assert state[0] == "failed"
    problems = " ".join(state[1]["verify_problems"])  # the VerificationError: every failed check with its keys
    for key in (f"missing_in_new: {faults.missing_in_new}", f"missing_in_old: {faults.extra_in_new}",
                f"changed: {faults.changed_title} (title)", f"{faults.orphan_transaction} → 8000000"):
        assert key in problems, (key, problems)


def test_phase3_dry_run_plans_every_check_and_changes_nothing(consistent, airflow_db, consistency_config,
                                                              fake_slack):
    plant_faults(consistent)  # a dry run does not diff: it succeeds even though the data differ
    dr, tasks = dry_run_changes_nothing(consistent, DAG)
    assert all(s == "success" for s in tasks.values()), tasks
    plan = planned_sql(dr)
    assert f'INSERT INTO "{SCHEMA}".consistency_runs' in plan and f'UPDATE "{SCHEMA}".consistency_runs' in plan
    assert '"public"."marketplace_listings"' in plan and '"marketplace"."service_listings"' in plan  # buckets
    assert "-- on the new database:" in plan and "-- reference transactions_to_invoices:" in plan
    assert "-- count parity transactions:" in plan
    # each mapped check task lists its own check's SQL
    listing = xcom(dr, "run_check", 0)
    assert listing == {"dry_run": True, "check": {"kind": "entity", "name": "listings"}}
    assert fake_slack.messages() == []
