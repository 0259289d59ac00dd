"""The migration_rollback_dual_write DAG (rollback scenario 1) with the simulator driving traffic."""

from __future__ import annotations

import time

import pytest

from tests.airflow_helpers import run_dag
from tests.cutover_fixtures import Traffic, flags, gate_rows, ledger, prepare_control, set_flags, write_config

pytestmark = pytest.mark.timeout(240)

FAST = {"cutover": {"check_interval": "1s", "min_requests_per_check": 10, "baseline_window": "2m",
                    "flag_propagation": "500ms", "rollback_verify_window": "30s", "quiesce_timeout": "20s"}}


def test_rollback_dag_sets_flag_and_verifies_recovery(databases, airflow_db, fake_slack, tmp_path,
                                                       monkeypatch):
    scenario = "dual_write"
    write_config(tmp_path, monkeypatch, FAST)
    prepare_control(databases)
    set_flags(databases, dual_write_enabled=True, read_new_pct=25 if scenario == "reads" else 0)
    # The incident: new-path reads fail (scenario 2) or dual-writes fail (scenario 1).
    faults = {"new_read_error_rate": 0.5} if scenario == "reads" else {"dual_write_failure_rate": 0.4}
    traffic = Traffic(databases, rate=60).start()
    traffic.inject(**faults)
    try:
        time.sleep(3)
        dag_id = "migration_rollback_reads" if scenario == "reads" else "migration_rollback_dual_write"
        state, tasks = run_dag(dag_id, {"reason": f"test incident ({scenario})"})
    finally:
        traffic.stop()
    assert state == "success", tasks
    flag, value = ("read_new_pct", 0) if scenario == "reads" else ("dual_write_enabled", False)
    assert flags(databases)[flag] == value
    changes = ledger(databases, "set_flag", flag)
    assert changes[-1][5]["new"] == value and "test incident" in changes[-1][6]
    assert ledger(databases, f"rollback.{scenario}.applied") and ledger(databases, f"rollback.{scenario}.verified")
    status, reason, figures, _ = gate_rows(databases, "rollback_recovery")[-1]
    assert status == "passed", reason
    assert figures["requests"] >= 10
    if scenario == "reads":
        assert figures["new_path_reads"] == 0
    else:
        assert figures["dual_write_attempts"] == 0
    titles = [m["text"] for m in fake_slack.messages()]
    assert any("recovered" in t for t in titles), titles


def test_dry_run_prints_the_plan_and_changes_nothing(databases, airflow_db, fake_slack, tmp_path, monkeypatch):
    from tests.snapshots import snapshot, unchanged

    write_config(tmp_path, monkeypatch, FAST)
    prepare_control(databases)
    set_flags(databases, dual_write_enabled=True, read_new_pct=25)
    before = [snapshot(databases.legacy_dsn), snapshot(databases.new_dsn)]
    state, tasks = run_dag("migration_rollback_dual_write", {"reason": "dry run", "dry_run": True})
    assert state == "success" and tasks["show_plan"] == "success", tasks
    assert all(s == "skipped" for t, s in tasks.items() if t not in ("choose_mode", "show_plan")), tasks
    after = [snapshot(databases.legacy_dsn), snapshot(databases.new_dsn)]
    assert unchanged(before[0], after[0]) == [] and unchanged(before[1], after[1]) == []
