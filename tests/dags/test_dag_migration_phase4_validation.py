"""migration_phase4_validation, run for real with dag.test(): shadow reads on, gate, full run, dry run."""

from __future__ import annotations

import pytest

from migration_engine.consistency import store
from tests.airflow_helpers import xcom
from tests.consistency_fixtures import (
    SCHEMA,
    SUITES,
    dry_run_changes_nothing,
    make_config,
    planned_sql,
    run_dag_run,
)

pytestmark = pytest.mark.timeout(300)

DAG = "migration_phase4_validation"


def _shadow_reads_for_a_day(dbs) -> None:
    """The application has been shadow-reading for a day: 14,400 comparisons, 2 mismatches (0.014 %)."""
    dbs.query("legacy", f"""
        INSERT INTO {SCHEMA}.shadow_read_stats (entity, bucket, cohort, reads_compared, mismatches)
        SELECT 'listings', date_trunc('minute', now()) - make_interval(mins => g),
               CASE WHEN g % 2 = 0 THEN 'read_new_10' ELSE 'read_new_25' END, 10,
               CASE WHEN g IN (7, 8) THEN 1 ELSE 0 END
        FROM generate_series(1, 1440) AS g""")


def test_phase3_then_phase4_pass_on_consistent_data(consistent, airflow_db, consistency_config, fake_slack):
    dr, tasks = run_dag_run("migration_phase3_data_migration")
    assert dr.state == "success", tasks

    _shadow_reads_for_a_day(consistent)
    dr, tasks = run_dag_run(DAG, {"shadow_read_pct": 25})
    assert dr.state == "success", tasks
    assert tasks["shadow_reads_gate"] == "success" and tasks["record_validation"] == "success"
    # nothing else turns shadow reads on: phase 4 sets the flag (audited) before its gate
    assert tasks["enable_shadow_reads"] == "success"
    (flag,) = consistent.query("legacy", f"SELECT value FROM {SCHEMA}.feature_flags WHERE name = 'shadow_read_pct'")
    assert flag == (25,)
    (change,) = consistent.query("legacy", f"SELECT actor, details FROM {SCHEMA}.audit_ledger "
                                           "WHERE action = 'set_flag' AND target = 'shadow_read_pct'")
    assert change[0] == "airflow:migration_phase4_validation" and change[1]["new"] == 25
    # ... as a flag step: state with the value found before (for its revert)
    (flag_step,) = consistent.query("legacy", f"SELECT status, details FROM {SCHEMA}.step_state "
                                              "WHERE step_id = 'phase4.flag.shadow_read_pct'")
    assert flag_step[0] == "verified" and flag_step[1]["before"] == {"value": 0}

    index = consistency_config / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    html = index.read_text()
    assert all(name in html for name in SUITES), "Data Docs must name every suite"
    conn = consistent.connect("legacy")
    try:
        last = store.last_consistency_run(conn, make_config())
        assert last.passed and last.dag_id == DAG and last.data_docs == str(index)
        assert store.last_consistency_run(conn, make_config(), kinds=("diff",)).dag_id == \
            "migration_phase3_data_migration"
    finally:
        conn.close()
    (ledger,) = consistent.query("legacy", f"SELECT details FROM {SCHEMA}.audit_ledger "
                                           "WHERE action = 'phase4_validated'")
    assert ledger[0]["shadow_reads"]["mismatches"] == 2 and ledger[0]["consistency_run"] == last.id
    assert fake_slack.messages() == []  # nothing to page about


def test_phase4_dry_run_plans_the_flag_and_the_run_and_changes_nothing(consistent, airflow_db, consistency_config,
                                                                       fake_slack):
    _shadow_reads_for_a_day(consistent)
    # The gate evaluates once in a dry run (it does not wait) and records that evaluation in
    # gate_results, like every evaluation: that row is the only write a dry run is allowed.
    dr, tasks = dry_run_changes_nothing(consistent, DAG, {"shadow_read_pct": 25},
                                        ignore=(f"{SCHEMA}.gate_results",))
    assert all(s == "success" for s in tasks.values()), tasks
    (flag,) = consistent.query("legacy", f"SELECT value FROM {SCHEMA}.feature_flags WHERE name = 'shadow_read_pct'")
    assert flag == (0,)
    (planned_flag,) = xcom(dr, "enable_shadow_reads")["steps"]
    assert planned_flag["step_id"] == "phase4.flag.shadow_read_pct" and planned_flag["changed"]
    assert "shadow_read_pct" in planned_flag["executed"][0] and "UPDATE" in planned_flag["executed"][0]
    plan = planned_sql(dr)
    assert f'INSERT INTO "{SCHEMA}".consistency_runs' in plan and "-- Great Expectations checkpoint" in plan
    for suite in SUITES:
        assert f"-- suite {suite} " in plan, suite
    assert xcom(dr, "record_validation")["dry_run"] is True
    index = consistency_config / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    assert not index.exists(), "a dry run must not run GX"
    assert fake_slack.messages() == []
