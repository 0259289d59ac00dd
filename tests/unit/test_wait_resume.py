"""Resilient waits (issue 13, item 5): a retried gate / hold / recovery watch resumes where it was.

Against the session's real Postgres: the first try records ``wait.started``; a retry of the same
series reads it back (same deadline, same hold end) and records ``wait.resumed``; a cleared task
(a new series) waits afresh; a restarted hold watch reads its counters back from its last check
in ``gate_results``; a rollback the trigger already made is found, so a retry reports it instead of
flipping the flag back up.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from migration_engine import control
from migration_engine.config import load_config
from migration_engine.gates.resume import first_try, start_or_resume

SCHEMA = "migration_control"


@pytest.mark.parametrize(("try_number", "max_tries", "retries", "first"), [
    (1, 2, 2, 1),   # the first try of a task never cleared
    (3, 2, 2, 1),   # its last retry
    (3, 4, 2, 3),   # cleared after try 2 failed: Airflow sets max_tries = 2 + retries; try 3 starts anew
    (1, -1, 2, 1),  # nonsense from an old metadata row: the try is its own series
])
def test_first_try_of_a_series(try_number, max_tries, retries, first):
    assert first_try(try_number=try_number, max_tries=max_tries, retries=retries) == first


def _ledger(databases, action):
    return databases.query("legacy", f"SELECT target, details FROM {SCHEMA}.audit_ledger WHERE action = %s "
                                     "ORDER BY id", (action,))


def test_a_retry_resumes_the_wait_and_a_cleared_task_starts_afresh(databases, control_conn):
    keys = {"kind": "gate", "dag_id": "d", "run_id": "r1", "task_id": "dual_write_healthy", "actor": "test"}
    deadline = (datetime.now(UTC) + timedelta(hours=48)).isoformat()
    w1 = start_or_resume(control_conn, SCHEMA, try_number=1, first=1, fresh={"deadline": deadline}, **keys)
    assert not w1.resumed and w1.details == {"deadline": deadline}

    later = (datetime.now(UTC) + timedelta(hours=50)).isoformat()
    w2 = start_or_resume(control_conn, SCHEMA, try_number=2, first=1, fresh={"deadline": later}, **keys)
    assert w2.resumed and w2.details["deadline"] == deadline and w2.started_at == w1.started_at

    other_run = start_or_resume(control_conn, SCHEMA, try_number=2, first=1, fresh={"deadline": later},
                                **{**keys, "run_id": "r2"})
    assert not other_run.resumed and other_run.details["deadline"] == later  # nothing to resume in r2

    cleared = start_or_resume(control_conn, SCHEMA, try_number=3, first=3, fresh={"deadline": later}, **keys)
    assert not cleared.resumed and cleared.details["deadline"] == later
    retry_after_clear = start_or_resume(control_conn, SCHEMA, try_number=4, first=3, fresh={"deadline": "x"}, **keys)
    assert retry_after_clear.resumed and retry_after_clear.details["deadline"] == later

    started = _ledger(databases, "wait.started")
    assert [(t, d["try_number"], d["first_try"]) for t, d in started] == [
        ("gate:d:r1:dual_write_healthy", 1, 1), ("gate:d:r2:dual_write_healthy", 2, 1),
        ("gate:d:r1:dual_write_healthy", 3, 3)]
    resumed = _ledger(databases, "wait.resumed")
    assert [(d["try_number"], d["started_try"]) for _t, d in resumed] == [(2, 1), (4, 3)]


def _hold_watch(cfg, *, hold_started, task_id="read_rollout_25pct", pct=25):
    from migration_engine.cutover.hold_watch import HoldWatch

    now = datetime.now(UTC)
    return HoldWatch(conn_id=cfg.connections.legacy, schema=cfg.control_schema, entities=["listings"], pct=pct,
                     hold_until=(now + timedelta(hours=4)).isoformat(), max_increase_points=1.0, min_requests=10,
                     baseline_pct=0.5, max_inconclusive=3,
                     snapshot={"at": now.isoformat(), "since": now.isoformat(), "old": {}, "new": {}},
                     dag_id="migration_phase5_cutover", run_id="r", task_id=task_id, hold_started=hold_started)


def test_a_restarted_hold_resumes_its_counters_from_the_last_check(databases, control_conn):
    cfg = load_config()
    started = datetime.now(UTC) - timedelta(minutes=30)

    def record(task_id, pct, checks, passed, streak):
        control.record_gate_result(
            control_conn, SCHEMA, gate="read_error_rate", status="passed" if streak == 0 else "waiting",
            figures={"step_pct": pct, "checks": checks, "passed_checks": passed, "inconclusive_streak": streak,
                     "decision": "continue", "task_id": task_id},
            reason="test", dag_id="migration_phase5_cutover", run_id="r")

    record("read_rollout_25pct", 25, 3, 2, 0)
    record("read_rollout_25pct", 25, 4, 2, 1)   # the latest check of this hold
    record("read_rollout_10pct", 10, 9, 9, 0)   # another step's hold: not ours
    watch = _hold_watch(cfg, hold_started=started.isoformat())
    assert watch.start() is None
    m = watch.monitor
    assert (m.checks, m.passed_checks, m.inconclusive_streak) == (4, 2, 1), watch.resumed_from

    fresh = _hold_watch(cfg, hold_started=datetime.now(UTC).isoformat())  # a new hold (cleared task)
    fresh.start()
    assert (fresh.monitor.checks, fresh.monitor.passed_checks) == (0, 0) and fresh.resumed_from is None
    old_style = _hold_watch(cfg, hold_started=None)  # a trigger serialized before hold_started existed
    old_style.start()
    assert old_style.monitor.checks == 0


def test_a_rollback_the_trigger_made_is_found_by_the_retry(databases, control_conn):
    from migration_engine.airflow.operators import rolled_back_event
    from migration_engine.cutover.rollout import Decision

    cfg = load_config()
    control.set_flag(control_conn, SCHEMA, "read_new_pct", 25, actor="test", reason="rollout at 25")
    started = datetime.now(UTC) - timedelta(seconds=1)
    ti = SimpleNamespace(run_id="r", task_id="read_rollout_25pct", dag_id="migration_phase5_cutover")
    assert rolled_back_event(control_conn, SCHEMA, ti, 25, since=started.isoformat()) is None

    watch = _hold_watch(cfg, hold_started=started.isoformat())
    done = watch.roll_back(Decision("breach", "25% step: error rate 9% > 1.5%", {"new_error_pct": 9.0}))
    assert done["rolled_back"] is True
    event = rolled_back_event(control_conn, SCHEMA, ti, 25, since=started.isoformat())
    assert event["status"] == "breach" and event["rolled_back"] is True
    assert event["reason"] == "25% step: error rate 9% > 1.5%" and event["figures"] == {"new_error_pct": 9.0}
    assert rolled_back_event(control_conn, SCHEMA, SimpleNamespace(run_id="r", task_id="read_rollout_50pct"), 50,
                             since=started.isoformat()) is None
    later = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()  # a later hold (cleared task): not its rollback
    assert rolled_back_event(control_conn, SCHEMA, ti, 25, since=later) is None
