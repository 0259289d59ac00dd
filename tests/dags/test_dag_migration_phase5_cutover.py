"""The phase-5 DAG against real Postgres: checklist, read rollout driven by simulated traffic, write cutover.

The checklist's history (48 h of dual-write stats, 24 h of shadow reads, a phase-4 consistency run)
is written straight into the control schema - those gates are tested on their own - while a real
verified backup is taken and the application simulator drives live traffic during the rollout.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.cutover_fixtures import (
    INTERVAL_S,
    Traffic,
    cutover_overrides,
    flags,
    gate_rows,
    ledger,
    prepare_control,
    set_flags,
    take_backup,
    wait_for,
    write_config,
)
from tests.hitl_helpers import Answer, run_dag_answering

pytestmark = pytest.mark.timeout(300)

DAG = "migration_phase5_cutover"


def _read_heavy():
    from devtools.simulator_cli import Mix

    return Mix(create=0.5, update=0.5, read=9)


READ_HEAVY = _read_heavy()


# --- the DAG -------------------------------------------------------------------------------
def prepare_for_cutover(databases, cfg) -> None:
    """Backfilled new tables, dual-write on, checklist history, a verified pre-cutover backup."""
    from devtools.demo_copy import copy_active_listings
    from migration_engine.consistency import store
    from tests.gate_fixtures import write_operation_stats, write_stats

    prepare_control(databases)
    legacy, new = databases.connect("legacy"), databases.connect("new")
    try:
        copy_active_listings(legacy, new)
        now = datetime.now(UTC)
        # 2,000 attempts a minute: the planted history outweighs the live traffic's first minute, whose
        # p95 (merged by maximum) a loaded test machine can push past the 500 ms warning line
        write_stats(legacy, end=now, minutes=10, attempts=2000, success_pct=99.9)
        write_stats(legacy, end=now, minutes=10, attempts=200, success_pct=100, table="shadow_read_stats")
        # the shadow reads' timings of both sides (the performance gate): new path within +20 % of old
        write_operation_stats(legacy, "shadow_read.old", end=now, minutes=10, requests=200, p95_ms=40)
        write_operation_stats(legacy, "shadow_read.new", end=now, minutes=10, requests=200, p95_ms=44)
        run = store.start_run(legacy, cfg.control_schema, kind="full", dag_id="migration_phase4_validation",
                              run_id="test")
        store.finish_run(legacy, cfg.control_schema, run, status="passed", failed_checks=[], summary={})
    finally:
        legacy.close()
        new.close()
    set_flags(databases, dual_write_enabled=True)
    take_backup(cfg)


def _pct_changes(databases) -> list:
    return [r[5]["new"] for r in ledger(databases, "set_flag", "read_new_pct")]


def test_healthy_rollout_reaches_100_and_writes_move_after_approval(databases, airflow_db, fake_slack, tmp_path,
                                                                    monkeypatch):
    cfg = write_config(tmp_path, monkeypatch, cutover_overrides(tmp_path))
    prepare_for_cutover(databases, cfg)
    traffic = Traffic(databases, rate=150, mix=READ_HEAVY).start()
    try:
        time.sleep(2)  # an old-path baseline
        run = run_dag_answering(DAG, [Answer("approve_read_cutover", "Approve"),
                                      Answer("approve_write_cutover", "Approve")], timeout=150)
    finally:
        traffic.stop()
    assert run.state == "success", (run.tasks, [(s, r) for s, r, *_ in gate_rows(databases, "read_error_rate")][-5:])
    assert all(run.tasks[t] == "success" for t in ("check_dual_write", "check_consistency", "check_shadow_reads",
                                                   "check_backup", "check_performance", "checklist_result",
                                                   "read_rollout_100pct", "write_cutover",
                                                   "end_keep_old_sync")), run.tasks
    f = flags(databases)
    assert f["read_new_pct"] == 100 and f["write_to_new"] is True and f["keep_old_sync"] is False
    assert _pct_changes(databases) == [10, 25, 50, 100]
    order = [(r[4], r[5]["new"]) for r in ledger(databases, "set_flag") if r[4] in ("write_to_new", "keep_old_sync")]
    assert order == [("keep_old_sync", True), ("write_to_new", True), ("keep_old_sync", False)]
    assert ledger(databases, "approval.approved")  # both approvals audited
    passed_steps = [r[5]["step_pct"] for r in ledger(databases, "read_rollout.step_passed")]
    assert passed_steps == [10, 25, 50, 100]
    checks = gate_rows(databases, "read_error_rate")
    assert checks and all(s == "passed" for s, *_ in checks), [(s, r) for s, r, *_ in checks if s != "passed"]
    assert {c[2]["step_pct"] for c in checks} == {10, 25, 50, 100}
    for gate in ("cutover_dual_write", "consistency_passed_recently", "cutover_shadow_reads", "pre_cutover_backup",
                 "cutover_read_latency"):
        assert gate_rows(databases, gate)[-1][0] == "passed", gate
    # Listings created after the write cutover live in the new table (and, during keep_old_sync, the old one).
    assert traffic.stats.errors.get("create", 0) == 0


def test_error_spike_at_25_percent_rolls_back_within_one_interval(databases, airflow_db, fake_slack, tmp_path,
                                                                   monkeypatch):
    cfg = write_config(tmp_path, monkeypatch, cutover_overrides(tmp_path))
    prepare_for_cutover(databases, cfg)
    traffic = Traffic(databases, rate=150, mix=READ_HEAVY).start()
    injected: dict = {}
    stop = threading.Event()

    def inject_at_25() -> None:  # the incident starts as soon as 25 % of reads are on the new path
        while not stop.is_set():
            if flags(databases)["read_new_pct"] == 25:
                traffic.inject(new_read_error_rate=0.5)
                injected["at"] = datetime.now(UTC)
                return
            stop.wait(0.05)

    injector = threading.Thread(target=inject_at_25, daemon=True)
    try:
        time.sleep(2)
        injector.start()
        run = run_dag_answering(DAG, [Answer("approve_read_cutover", "Approve"),
                                      Answer("approve_write_cutover", "Approve")], timeout=120)
    finally:
        stop.set()
        traffic.stop()
    assert run.state == "failed", run.tasks
    assert run.tasks["read_rollout_10pct"] == "success" and run.tasks["read_rollout_25pct"] == "failed"
    assert run.tasks["read_rollout_50pct"] == "upstream_failed" and run.tasks["write_cutover"] == "upstream_failed"
    assert flags(databases)["read_new_pct"] == 0 and flags(databases)["write_to_new"] is False
    assert _pct_changes(databases) == [10, 25, 0]
    # the flips are steps: 10 % applied, 25 % reverted (the automatic rollback recorded as its revert)
    states = dict(databases.query("legacy", "SELECT step_id, status FROM migration_control.step_state "
                                            "WHERE step_id LIKE 'phase5.read_rollout.%'"))
    assert states == {"phase5.read_rollout.10pct": "applied", "phase5.read_rollout.25pct": "reverted"}, states

    # The ledger has the reason: the step and the figures.
    (rolled,) = ledger(databases, "read_rollout.rolled_back")
    details, reason = rolled[5], rolled[6]
    assert details["step_pct"] == 25 and details["decision"] == "breach"
    assert details["figures"]["new_error_pct"] > details["figures"]["baseline_pct"] + 0.5
    assert "25% step" in reason and "new-path reads error rate" in reason
    flag_change = ledger(databases, "set_flag", "read_new_pct")[-1]
    assert flag_change[5]["step_pct"] == 25 and "automatic read-rollout rollback" in flag_change[6]

    # Back to 0 within one check interval of the spike (plus the app's stats flush and flag cache).
    rolled_back_at = datetime.fromisoformat(details["rolled_back_at"])
    assert "at" in injected
    assert rolled_back_at - injected["at"] <= timedelta(seconds=INTERVAL_S + 1.5), (injected, rolled_back_at)
    wait_for(lambda: traffic.app.flags()["read_new_pct"] == 0, 5, "the app to see read_new_pct=0")

    # A critical Slack message with the reason, and the run failed with it.
    critical = [m for m in fake_slack.messages() if m["channel"] == cfg.slack.critical_channel]
    assert any("Read rollout rolled back at 25%" in m["text"] for m in critical), [m["text"] for m in critical]
    assert any("read rollout 25% breach" in str(m.get("blocks")) for m in critical)
    breach = [r for r in gate_rows(databases, "read_error_rate") if r[0] == "critical"]
    assert len(breach) == 1 and breach[0][2]["step_pct"] == 25


def test_latency_spike_at_25_percent_rolls_back_within_one_interval_with_the_reason(
        databases, airflow_db, fake_slack, tmp_path, monkeypatch):
    """Seed rollback scenario 2's other symptom: no errors, but new-path reads get slow."""
    cfg = write_config(tmp_path, monkeypatch, cutover_overrides(tmp_path))
    prepare_for_cutover(databases, cfg)
    traffic = Traffic(databases, rate=150, mix=READ_HEAVY).start()
    injected: dict = {}
    stop = threading.Event()

    def slow_at_25() -> None:
        while not stop.is_set():
            if flags(databases)["read_new_pct"] == 25:
                traffic.inject(new_path_latency_ms=150)
                injected["at"] = datetime.now(UTC)
                return
            stop.wait(0.05)

    injector = threading.Thread(target=slow_at_25, daemon=True)
    try:
        time.sleep(2)
        injector.start()
        run = run_dag_answering(DAG, [Answer("approve_read_cutover", "Approve"),
                                      Answer("approve_write_cutover", "Approve")], timeout=120)
    finally:
        stop.set()
        traffic.stop()
    assert run.state == "failed", run.tasks
    assert run.tasks["read_rollout_10pct"] == "success" and run.tasks["read_rollout_25pct"] == "failed", run.tasks
    assert flags(databases)["read_new_pct"] == 0 and _pct_changes(databases) == [10, 25, 0]
    (rolled,) = ledger(databases, "read_rollout.rolled_back")
    details, reason = rolled[5], rolled[6]
    assert details["step_pct"] == 25 and details["decision"] == "breach"
    assert "latency degradation" in reason and "new-path read p95" in reason, reason
    figures = details["figures"]
    assert figures["latency_status"] == "critical" and figures["latency_new_p95_ms"] >= 150
    assert figures["new_error_pct"] <= figures["baseline_pct"] + 0.5  # the error rate alone would not have tripped
    rolled_back_at = datetime.fromisoformat(details["rolled_back_at"])
    assert rolled_back_at - injected["at"] <= timedelta(seconds=INTERVAL_S + 1.5), (injected, rolled_back_at)
    critical = [m for m in fake_slack.messages() if m["channel"] == cfg.slack.critical_channel]
    assert any("Read rollout rolled back at 25%" in m["text"] and "latency degradation" in m["text"]
               for m in critical), [m["text"] for m in critical]


def test_dry_run_prints_the_plan_and_changes_nothing(databases, airflow_db, fake_slack, tmp_path, monkeypatch):
    from migration_engine.cutover.steps import plan_steps
    from migration_engine.steps import StepRunner
    from tests.airflow_helpers import run_dag
    from tests.snapshots import snapshot, unchanged

    cfg = write_config(tmp_path, monkeypatch, cutover_overrides(tmp_path))
    prepare_control(databases)
    set_flags(databases, dual_write_enabled=True)
    before = {side: snapshot(dsn) for side, dsn in (("legacy", databases.legacy_dsn), ("new", databases.new_dsn))}
    state, tasks = run_dag(DAG, {"dry_run": True})
    assert state == "success" and tasks["show_plan"] == "success", tasks
    assert all(tasks[t] == "skipped" for t in ("check_dual_write", "approve_read_cutover", "read_rollout_10pct",
                                               "write_cutover", "end_keep_old_sync")), tasks
    after = {side: snapshot(dsn) for side, dsn in (("legacy", databases.legacy_dsn), ("new", databases.new_dsn))}
    for side in before:
        assert unchanged(before[side], after[side]) == [], side
    # The plan is the exact UPDATE of every flip (what the dry-run task logs).
    conn = databases.connect("legacy")
    try:
        plans = StepRunner(conn, schema=cfg.control_schema, ddl=cfg.ddl, actor="test").plan(plan_steps(cfg))
    finally:
        conn.close()
    assert [p.step_id for p in plans] == ["phase5.read_rollout.10pct", "phase5.read_rollout.25pct",
                                          "phase5.read_rollout.50pct", "phase5.read_rollout.100pct",
                                          "phase5.flag.keep_old_sync", "phase5.flag.write_to_new",
                                          "phase5.keep_old_sync_end"]
    assert all(p.changed and "UPDATE" in p.executed[0] for p in plans[:-1]), plans
    assert not plans[-1].changed  # keep_old_sync is already off
    assert flags(databases)["read_new_pct"] == 0 and flags(databases)["write_to_new"] is False


def _checklist_alert(databases) -> list[tuple]:
    return databases.query("legacy", "SELECT status, severity, occurrences, conditions FROM migration_control.alerts "
                                     "WHERE dedup_key = %s", (f"checklist:{DAG}",))


def test_early_trigger_pages_once_with_next_steps_and_a_later_passing_run_resolves_it(
        databases, airflow_db, fake_slack, tmp_path, monkeypatch):
    from tests.airflow_helpers import run_dag

    overrides = cutover_overrides(tmp_path)
    overrides["cutover"]["checklist_timeout"] = "4s"
    cfg = write_config(tmp_path, monkeypatch, overrides)
    prepare_control(databases)
    set_flags(databases, dual_write_enabled=True)
    # Too early: no dual-write history, no consistency run, no shadow reads, no backup, no timings.
    state, tasks = run_dag(DAG)
    assert state == "failed" and tasks["checklist_result"] == "failed", tasks
    assert tasks["approve_read_cutover"] == "upstream_failed", tasks
    assert flags(databases)["read_new_pct"] == 0
    posted = fake_slack.messages()
    assert len(posted) == 1, [m["text"] for m in posted]  # one page for the run, not one per gate
    page = posted[0]["text"] + json_blocks(posted[0])
    assert "Phase 5 checklist not met: 5 check(s) short" in page
    for next_step in ("migration_phase2_dual_write", "migration_phase4_validation", "migration_preflight_backup",
                      "shadow_read_pct", "pg_stat_statements"):
        assert next_step in page, next_step
    assert "only 0" in page or "no attempts" in page  # the short figure, not only the gate's name
    ((status, severity, occurrences, conditions),) = _checklist_alert(databases)
    # Only data that is not there yet (nothing found wrong): a warning to the warning channel, no on-call mention.
    assert status == "open" and severity == "warning" and occurrences == 1
    assert posted[0]["channel"] == cfg.slack.warning_channel
    assert set(conditions) == {"cutover_dual_write", "consistency_passed_recently", "cutover_shadow_reads",
                               "pre_cutover_backup", "cutover_read_latency"}

    # Everything in place: the next run's passing evaluations resolve the page before anyone approves.
    prepare_for_cutover(databases, cfg)
    run = run_dag_answering(DAG, [Answer("approve_read_cutover", "Reject")], timeout=90)
    assert run.tasks["checklist_result"] == "success", run.tasks
    assert _checklist_alert(databases)[0][0] == "resolved"
    replies = [m for m in fake_slack.messages() if m.get("thread_ts")]
    assert any("Resolved: Phase 5 checklist not met" in m["text"] for m in replies), [m["text"] for m in replies]


def json_blocks(message: dict) -> str:
    import json

    return json.dumps(message.get("blocks", []), ensure_ascii=False)
