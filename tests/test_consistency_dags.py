"""The phase-3, phase-4 and hourly consistency DAGs, run for real with dag.test()."""

from __future__ import annotations

import pytest

from migration_engine.consistency import store
from tests.airflow_helpers import get_dag, run_dag
from tests.consistency_fixtures import SCHEMA, make_config, plant_faults, repair_faults, write_config

pytestmark = pytest.mark.timeout(240)

SUITES = ["listings_count_parity", "listings_row_parity", "transactions_count_parity",
          "cross_db_reference_integrity", "tenant_payment_mode_validity", "invoice_status_validity"]


@pytest.fixture
def consistency_config(tmp_path, monkeypatch):
    path = write_config(tmp_path / "migration.yaml", data_docs_dir=str(tmp_path / "gx"))
    monkeypatch.setenv("MIGRATION_CONFIG", str(path))
    return tmp_path


def test_hourly_dag_is_scheduled_hourly_without_catchup(airflow_db):
    dag = get_dag("migration_consistency_hourly")
    assert dag.schedule == "@hourly" and dag.timetable.expression == "0 * * * *"  # minute 0 of every hour
    assert dag.catchup is False and dag.max_active_runs == 1
    assert make_config().consistency.schedule == "@hourly"


def test_phase3_then_phase4_pass_on_consistent_data(consistent, airflow_db, consistency_config, fake_slack):
    state, tasks = run_dag("migration_phase3_data_migration")
    assert state == "success", tasks
    assert sorted(t for t in tasks if t.startswith("run_check[")) == [f"run_check[{i}]" for i in range(4)]
    assert all(s == "success" for s in tasks.values()), tasks

    # the application has been shadow-reading for a day: 14,400 comparisons, 2 mismatches (0.014 %)
    consistent.query("legacy", f"""
        INSERT INTO {SCHEMA}.shadow_read_stats (entity, bucket, cohort, reads_compared, mismatches)
        SELECT 'listings', date_trunc('minute', now()) - make_interval(mins => g),
               CASE WHEN g % 2 = 0 THEN 'read_new_10' ELSE 'read_new_25' END, 10,
               CASE WHEN g IN (7, 8) THEN 1 ELSE 0 END
        FROM generate_series(1, 1440) AS g""")
    state, tasks = run_dag("migration_phase4_validation", {"shadow_read_pct": 25})
    assert state == "success", tasks
    assert tasks["shadow_reads_gate"] == "success" and tasks["record_validation"] == "success"
    # nothing else turns shadow reads on: phase 4 sets the flag (audited) before its gate
    assert tasks["enable_shadow_reads"] == "success"
    (flag,) = consistent.query("legacy", f"SELECT value FROM {SCHEMA}.feature_flags WHERE name = 'shadow_read_pct'")
    assert flag == (25,)
    (change,) = consistent.query("legacy", f"SELECT actor, details FROM {SCHEMA}.audit_ledger "
                                           "WHERE action = 'set_flag' AND target = 'shadow_read_pct'")
    assert change[0] == "airflow:migration_phase4_validation" and change[1]["new"] == 25

    index = consistency_config / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    html = index.read_text()
    assert all(name in html for name in SUITES), "Data Docs must name every suite"
    conn = consistent.connect("legacy")
    try:
        last = store.last_consistency_run(conn, make_config())
        assert last.passed and last.dag_id == "migration_phase4_validation" and last.data_docs == str(index)
        assert store.last_consistency_run(conn, make_config(), kinds=("diff",)).dag_id == \
            "migration_phase3_data_migration"
    finally:
        conn.close()
    (ledger,) = consistent.query("legacy", f"SELECT details FROM {SCHEMA}.audit_ledger "
                                           "WHERE action = 'phase4_validated'")
    assert ledger[0]["shadow_reads"]["mismatches"] == 2 and ledger[0]["consistency_run"] == last.id
    assert fake_slack.messages() == []  # nothing to page about


def test_phase3_fails_and_names_the_keys(consistent, airflow_db, consistency_config, fake_slack):
    faults = plant_faults(consistent)
    state, tasks = run_dag("migration_phase3_data_migration")
    assert state == "failed" and tasks["verdict"] == "failed"
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


def test_hourly_pages_once_updates_while_failing_and_resolves(consistent, airflow_db, consistency_config, fake_slack):
    faults = plant_faults(consistent)
    critical = make_config().slack.critical_channel

    state, tasks = run_dag("migration_consistency_hourly")
    assert state == "failed" and tasks["escalate"] == "success" and tasks["verdict"] == "failed", tasks
    posts = fake_slack.messages()
    assert len(posts) == 1, [p.get("text") for p in posts]  # one page, no second one from the failure callback
    page = posts[0]
    assert page["channel"] == critical and "CRITICAL" in page["text"]
    body = page["text"]
    for key in (f"missing_in_new: {faults.missing_in_new}", f"missing_in_old: {faults.extra_in_new}",
                f"changed: {faults.changed_title} (title)", f"{faults.orphan_transaction} → 8000000",
                f"invalid_value: {faults.invalid_payment_tenant}", f"null_value: {faults.null_payment_tenant}"):
        assert key in body, (key, body)

    state, _ = run_dag("migration_consistency_hourly")
    assert state == "failed"
    assert len(fake_slack.messages()) == 1, "the same failure must not page twice"
    updates = fake_slack.messages("chat.update")
    assert len(updates) == 1 and "Seen 2 times" in str(updates[-1]["blocks"])

    repair_faults(consistent, faults)
    state, tasks = run_dag("migration_consistency_hourly")
    assert state == "success", tasks
    posts = fake_slack.messages()
    assert len(posts) == 2 and "Resolved" in posts[-1]["text"] and posts[-1]["thread_ts"] == page_ts(fake_slack)
    (status,) = consistent.query("legacy", f"SELECT status FROM {SCHEMA}.alerts")
    assert status == ("resolved",)


def page_ts(fake_slack) -> str:
    return next(c.response["ts"] for c in fake_slack.calls_to("chat.postMessage"))
