"""migration_phase2_dual_write runs for real (dag.test) against the test databases and a fake Slack."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from migration_engine import control
from migration_engine.config import load_config
from tests.airflow_helpers import run_dag
from tests.backfill_fixtures import add_listings, compare
from tests.gate_fixtures import SCHEMA, gate_rows, write_stats
from tests.snapshots import snapshot, unchanged

DAG_ID = "migration_phase2_dual_write"
pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def deferrals(monkeypatch):
    """Evidence that a waiting gate holds no worker slot.

    dag.test() runs each task through ``run_task_in_process`` (the worker side) and then the trigger
    inline. Right after the worker side returns, we read the metadata DB the way the scheduler
    would: the task instance must be ``deferred`` with a ``trigger`` row holding our GateTrigger -
    i.e. the task's process has finished and only the triggerer's event loop is waiting.
    """
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.trigger import Trigger
    from airflow.sdk.execution_time import supervisor
    from airflow.utils.session import create_session

    seen: list[dict] = []
    real = supervisor.run_task_in_process

    def spy(ti, task):
        result = real(ti=ti, task=task)
        with create_session() as session:
            row = session.get(TaskInstance, ti.id)
            if row is not None and row.state == "deferred":
                trigger = session.get(Trigger, row.trigger_id)
                seen.append({"task_id": row.task_id, "state": row.state, "next_method": row.next_method,
                             "trigger_timeout": row.trigger_timeout, "worker_result": str(result.ti.state),
                             "classpath": trigger.classpath, "kwargs": trigger.kwargs})
        return result

    monkeypatch.setattr(supervisor, "run_task_in_process", spy)
    return seen


def test_phase2_enables_dual_write_and_backfills_behind_healthy_gates(
        databases, airflow_db, control_conn, fake_slack, deferrals):
    add_listings(databases, 8_000)
    write_stats(control_conn, end=datetime.now(UTC), minutes=75, attempts=1000, success_pct=99.5, p95_ms=35)
    state, tasks = run_dag(DAG_ID, {"parallelism": 3, "batch_size": 700, "latency_budget_pct": 25, "app_p95_ms": 40})
    assert state == "success", tasks
    # the latency-budget Params reached the pass's settings (the ranges ran under the controller)
    ((settings,),) = databases.query("legacy", f"SELECT settings FROM {SCHEMA}.backfill_runs")
    assert settings["throttle"]["budget"]["enabled"] is True
    assert settings["throttle"]["budget"]["max_latency_increase_pct"] == 25
    assert settings["throttle"]["budget"]["app_p95_ms"] == 40
    assert settings["throttle"]["budget"]["probe_allowance"] == "app_p95"
    assert [k for k in tasks if k.startswith("backfill_range[")] == [f"backfill_range[{i}]" for i in range(3)]

    # the flag is on, and the ledger says who turned it on (the DAG, and in its details the run and task)
    assert control.get_flags(control_conn, SCHEMA)["dual_write_enabled"] is True
    (flag_entry,) = databases.query("legacy", f"SELECT actor, details FROM {SCHEMA}.audit_ledger "
                                              "WHERE action = 'set_flag' AND target = 'dual_write_enabled'")
    assert flag_entry[0] == f"airflow:{DAG_ID}" and flag_entry[1]["new"] is True
    assert flag_entry[1]["task_id"] == "enable_dual_write" and flag_entry[1]["run_id"]
    # ... as a step: applied once, and the passes verified (old == new by per-row checksums)
    states = dict(databases.query("legacy", f"SELECT step_id, status FROM {SCHEMA}.step_state"))
    assert states == {"phase2.flag.dual_write_enabled": "verified", "phase2.backfill.listings": "verified"}, states

    # old and new are equal: every in-scope row once, every mapped column
    c = compare(databases)
    assert c.equal and c.new_rows == c.in_scope > 5000, c

    # both gates evaluated, recorded with figures, passed; nothing paged
    rows = gate_rows(control_conn, "dual_write_health")
    assert {r[3]["task_id"] for r in rows} == {"dual_write_healthy", "dual_write_healthy_after_backfill"}
    assert all(r[1] == "passed" and r[3]["success_pct"] == 99.5 and r[4] == DAG_ID for r in rows)
    assert fake_slack.messages() == []

    # progress and the phase summary are in the ledger
    actions = [a for (a,) in databases.query("legacy", f"SELECT action FROM {SCHEMA}.audit_ledger ORDER BY id")]
    assert actions.count("backfill_range_done") == 3 and "backfill_done" in actions
    assert actions[-1] == "phase2_backfill_complete"

    # no worker slot while waiting: each gate task was 'deferred' with a GateTrigger row
    gates = {d["task_id"]: d for d in deferrals}
    assert set(gates) == {"dual_write_healthy", "dual_write_healthy_after_backfill"}, deferrals
    for d in gates.values():
        assert d["state"] == "deferred" and d["next_method"] == "execute_complete" and d["trigger_timeout"]
        assert d["classpath"] == "migration_engine.airflow.triggers.GateTrigger"
        assert d["kwargs"]["gate"] == "dual_write_health" and d["kwargs"]["fail_on"] == ["critical"]
    assert gates["dual_write_healthy"]["kwargs"]["gate_params"] == {"min_success_pct": "95.0"}


def test_gate_blocks_alerts_with_figures_and_times_out(databases, airflow_db, control_conn, fake_slack):
    """93 % success: a warning (with the figures) reaches Slack; below the 99 % bar the gate never
    passes, so it fails at its timeout with the reason, and nothing is copied."""
    write_stats(control_conn, end=datetime.now(UTC), minutes=75, attempts=100, success_pct=93)
    state, tasks = run_dag(DAG_ID, {"gate_min_success_pct": 99, "gate_timeout_seconds": 4})
    assert state == "failed"
    assert tasks["enable_dual_write"] == "success" and tasks["dual_write_healthy"] == "failed"
    assert tasks["plan_backfill"] == "upstream_failed"
    assert databases.query("new", "SELECT count(*) FROM marketplace.service_listings")[0][0] == 0

    posted = fake_slack.messages()
    warning = [m for m in posted if "Gate dual_write_health is warning" in m["text"]]
    assert len(warning) == 1, [m["text"] for m in posted]  # paged once, not once per evaluation
    fields = str(warning[0]["blocks"])  # the measured figures travel as Block Kit fields
    for figure in ("*success_pct*\\n93.0", "*attempts*", "*failures*", "*min_success_pct*\\n99.0",
                   "*warn_below_pct*\\n95.0", "*minutes_with_data*"):
        assert figure in fields, (figure, fields)
    assert "93.00% success" in warning[0]["text"] and "below the warning threshold 95%" in warning[0]["text"]
    assert warning[0]["channel"] == load_config().slack.warning_channel
    # the task failure itself pages critical, naming the reason
    failure = [m for m in posted if "Task failed" in m["text"] and "dual_write_healthy" in m["text"]]
    assert failure and "did not pass" in str(failure[0]["blocks"])

    rows = gate_rows(control_conn, "dual_write_health")
    assert len(rows) >= 2 and {r[1] for r in rows} == {"warning"}  # every evaluation recorded


def test_dry_run_changes_nothing(databases, airflow_db, control_conn, caplog, capfd):
    # The dry run's gates evaluate once and record that evaluation in gate_results (the figures an
    # operator wants before the real run; asserted below): the one table a dry run may write.
    ignore = (f"{SCHEMA}.gate_results",)
    before = {side: snapshot(dsn, ignore=ignore) for side, dsn in (("legacy", databases.legacy_dsn),
                                                                   ("new", databases.new_dsn))}
    caplog.set_level("INFO", logger="migration_engine")
    state, tasks = run_dag(DAG_ID, {"dry_run": True, "parallelism": 2})
    assert state == "success", tasks
    after = {side: snapshot(dsn, ignore=ignore) for side, dsn in (("legacy", databases.legacy_dsn),
                                                                  ("new", databases.new_dsn))}
    assert unchanged(before["legacy"], after["legacy"]) == [] and unchanged(before["new"], after["new"]) == []
    # the plan was printed: the flag's UPDATE, the key ranges and the exact SQL of one batch
    # the task logs of dag.test(): to the terminal in a fresh process, through logging once Airflow configured it
    log = caplog.text + "".join(capfd.readouterr())
    assert "DRY RUN apply phase2.flag.dual_write_enabled" in log and "dual_write_enabled" in log
    assert "DRY RUN apply phase2.backfill.listings" in log and "new pass" in log and "in 2 range(s)" in log
    assert "COPY (" in log and "ON CONFLICT" in log
    assert [k for k in tasks if k.startswith("backfill_range[")] == ["backfill_range[0]", "backfill_range[1]"]
    assert control.get_flags(control_conn, SCHEMA)["dual_write_enabled"] is False
    assert databases.query("new", "SELECT count(*) FROM marketplace.service_listings")[0][0] == 0
    # no backfill pass recorded (the table exists from migration_setup on: control-schema migration 003)
    assert databases.query("legacy", "SELECT count(*) FROM migration_control.backfill_runs")[0][0] == 0
    # the gates evaluated once (no stats yet: waiting, recorded) and did not wait
    assert [r[1] for r in gate_rows(control_conn, "dual_write_health")] == ["waiting", "waiting"]
