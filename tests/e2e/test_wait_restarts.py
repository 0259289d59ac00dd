"""A deferred gate survives a triggerer and a scheduler lost mid-hold: real Airflow processes.

``migration_phase2_dual_write`` on LocalExecutor (scheduler, dag-processor, triggerer, api-server as
processes; metadata DB in this session's PostgreSQL cluster). Its ``dual_write_healthy`` gate waits in
the triggerer while dual-write runs at 93 % (below the 95 % bar, above the 90 % critical line): the
gate is ``warning`` - the status the gate pages for, once - and keeps waiting. Then:

1. the triggerer is SIGKILLed (its whole process tree): the task stays ``deferred`` (not failed, not
   re-deferred), nothing evaluates the gate while no triggerer runs, and once a new triggerer takes
   the orphaned trigger over (``[triggerer] triggerer_health_check_threshold``, low here) the
   evaluations continue from the same trigger - same deadline - and do not page again (the monitor
   reads the status it already reported back from ``gate_results``);
2. the scheduler is SIGKILLed while the task is deferred: the triggerer goes on evaluating, a new
   scheduler starts;
3. dual-write turns healthy: the gate passes, the task resumes (on its first try, or a retry that
   continues the same wait: 3.3.2's spurious-failure race), the warning is resolved (one update, one
   thread reply) and the run completes.

The deadline is the one the first try recorded (``wait.started`` in the audit ledger): one such
entry, the trigger's kwargs carry it, and any retry's ``wait.resumed`` repeats it.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.gate_fixtures import SCHEMA, gate_rows, write_stats

DAG_ID = "migration_phase2_dual_write"
TASK = "dual_write_healthy"
POKE = 5  # seconds between evaluations (the DAG's floor)
TRIGGERER_HEALTH = 8  # seconds without a heartbeat before a triggerer's triggers are taken over (default 30)
# the gate watch logs state changes ("evaluation 2: *** waiting -> PASSED ***") and the final pass
GATE_PASSED = re.compile(r"gate dual_write_health (evaluation \d+: \*\*\* (\w+ -> )?PASSED|passed after)")

pytestmark = pytest.mark.timeout(420)


def _config(path: Path) -> Path:
    import yaml

    from migration_engine.config import DEFAULT_CONFIG_PATH

    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["dual_write"]["poke_interval"] = f"{POKE}s"
    path.write_text(yaml.safe_dump(data))
    return path


def _find(obj, key: str):
    """The first value under ``key`` anywhere in a nested JSON value (the trigger's serialized kwargs)."""
    if isinstance(obj, dict):
        if key in obj and isinstance(obj[key], str):
            return obj[key]
        obj = list(obj.values())
    if isinstance(obj, list):
        for item in obj:
            found = _find(item, key)
            if found is not None:
                return found
    return None


@pytest.fixture
def restart_stack(airflow_stack, databases, fake_slack, tmp_path):
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    stack = airflow_stack("airflow_restarts", executor="LocalExecutor", config=_config(tmp_path / "migration.yaml"),
                          env={"AIRFLOW__CORE__FERNET_KEY": key,  # so the test can read the trigger's kwargs
                               "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": str(TRIGGERER_HEALTH)})
    stack.fernet = Fernet(key.encode())
    stack.migrate()
    stack.start_core()
    return stack


def test_gate_survives_triggerer_and_scheduler_restarts(restart_stack, databases, control_conn, fake_slack):
    stack, api = restart_stack, restart_stack.api
    end = datetime.now(UTC) + timedelta(minutes=20)  # future minutes are outside the window
    write_stats(control_conn, end=end, minutes=100, attempts=1000, success_pct=93, p95_ms=35)

    stack.wait(f"{DAG_ID} to be parsed", lambda: DAG_ID in api.dag_ids(), 180, interval=2)
    api.unpause(DAG_ID)
    run_id = api.trigger(DAG_ID, {"parallelism": 1, "gate_timeout_seconds": 900})
    target = f"gate:{DAG_ID}:{run_id}:{TASK}"

    def ti():
        rows = stack.query("SELECT state, try_number, trigger_id, trigger_timeout FROM task_instance "
                           "WHERE dag_id = %s AND run_id = %s AND task_id = %s", (DAG_ID, run_id, TASK))
        return dict(zip(("state", "try_number", "trigger_id", "trigger_timeout"), rows[0], strict=True)) if rows else {}

    def evaluations() -> list[tuple]:
        return [r for r in gate_rows(control_conn, "dual_write_health")
                if r[5] == run_id and r[3].get("task_id") == TASK]

    def triggerer_jobs() -> list[int]:
        return [i for (i,) in stack.query("SELECT id FROM job WHERE job_type = 'TriggererJob' ORDER BY id")]

    def warning_pages() -> list[dict]:
        """Top-level posts about the warning (the resolve's thread reply quotes the title too)."""
        return [m for m in fake_slack.messages()
                if "Gate dual_write_health is warning" in m.get("text", "") and not m.get("thread_ts")]

    def deferred_with(n: int):
        """The task still deferred (anything else fails at once) and at least ``n`` evaluations recorded."""
        now = ti()
        assert now.get("state") in (None, "scheduled", "queued", "running", "deferred"), now
        return now.get("state") == "deferred" and len(evaluations()) >= n and now

    # -- the gate waits in the triggerer, warning (paged once) --------------------------------------------
    held = stack.wait("the gate to be deferred with 2 evaluations", lambda: deferred_with(2), 240)
    assert {r[1] for r in evaluations()} == {"warning"}, evaluations()
    fake_slack.wait_for(count=1, timeout=30)
    assert len(warning_pages()) == 1, fake_slack.messages()
    (trigger_row,) = stack.query("SELECT triggerer_id, kwargs FROM trigger WHERE id = %s", (held["trigger_id"],))
    first_triggerer = trigger_row[0]
    assert first_triggerer == triggerer_jobs()[0]
    stored = trigger_row[1]  # Airflow 3.3.2 stores new triggers' kwargs as plain JSON; older rows are encrypted
    deadline = _find(json.loads(stored if stored.startswith("{") else stack.fernet.decrypt(stored.encode())),
                     "deadline")
    (started,) = [d for (d,) in databases.query("legacy", f"SELECT details FROM {SCHEMA}.audit_ledger WHERE "
                                                          "action = 'wait.started' AND target = %s", (target,))]
    assert deadline and started["deadline"] == deadline and started["try_number"] == held["try_number"]

    # -- 1. the triggerer is lost mid-hold ------------------------------------------------------------------
    stack.kill("triggerer")
    at_kill = len(evaluations())

    def orphaned():
        """The lost triggerer's heartbeat is older than the take-over threshold; the task waits on."""
        assert deferred_with(0), ti()
        (age,) = stack.query("SELECT EXTRACT(EPOCH FROM now() - latest_heartbeat) FROM job WHERE id = %s",
                             (first_triggerer,))[0]
        return age > TRIGGERER_HEALTH + 1

    stack.wait("the lost triggerer's heartbeat to go stale", orphaned, 60)
    # an evaluation the killed process had in flight may still land; nothing after that
    assert len(evaluations()) <= at_kill + 1, evaluations()[at_kill:]
    quiet = len(evaluations())
    assert ti() == held  # the same deferral: same try, same trigger row, same trigger timeout

    stack.restart("triggerer")

    def taken_over():
        (owner,) = stack.query("SELECT triggerer_id FROM trigger WHERE id = %s", (held["trigger_id"],))[0]
        return owner not in (None, first_triggerer) and deferred_with(quiet + 2)

    stack.wait("the new triggerer to take the trigger over and evaluate twice", taken_over, 120)
    (second_triggerer,) = stack.query("SELECT triggerer_id FROM trigger WHERE id = %s", (held["trigger_id"],))[0]
    assert second_triggerer == triggerer_jobs()[-1] != first_triggerer
    assert ti() == held
    assert {r[1] for r in evaluations()} == {"warning"}
    # the warning the first triggerer paged for is not paged again, not even as an update ("seen 2 times")
    assert len(warning_pages()) == 1 and not fake_slack.calls_to("chat.update"), fake_slack.calls
    alert = databases.query("legacy", f"SELECT status, occurrences FROM {SCHEMA}.alerts WHERE dedup_key = %s",
                            (f"gate:dual_write_health:{DAG_ID}:{run_id}:{TASK}",))
    assert alert == [("open", 1)], alert

    # -- 2. the scheduler is lost while the task is deferred -------------------------------------------------
    stack.kill("scheduler")
    before = len(evaluations())
    stack.wait("evaluations to go on without a scheduler", lambda: deferred_with(before + 2), 60)
    assert ti() == held
    schedulers = [i for (i,) in stack.query("SELECT id FROM job WHERE job_type = 'SchedulerJob'")]
    stack.restart("scheduler")
    stack.wait("the new scheduler to heartbeat", lambda: stack.query(
        "SELECT id FROM job WHERE job_type = 'SchedulerJob' AND state = 'running' AND id <> ALL(%s)",
        (schedulers,)), 90)

    # -- 3. dual-write turns healthy: the gate passes and the run completes ----------------------------------
    write_stats(control_conn, end=end, minutes=100, attempts=1000, success_pct=99.5, p95_ms=35)

    def finished():
        state = api.run_state(DAG_ID, run_id)
        return state if state in ("success", "failed") else None

    state = stack.wait("the run to finish", finished, 180, interval=2)
    tis = {t["task_id"]: t for t in api.task_instances(DAG_ID, run_id)}
    assert state == "success", {k: (v["state"], v["try_number"]) for k, v in tis.items()}
    assert tis[TASK]["state"] == "success"

    rows = evaluations()
    assert rows[-1][1] == "passed" and {r[1] for r in rows[:-1]} == {"warning"}, [r[1] for r in rows]
    assert len(rows) > quiet + 2  # the new triggerer's evaluations continued the series (nothing reset)
    ledger = databases.query("legacy", f"SELECT action, details FROM {SCHEMA}.audit_ledger WHERE target = %s "
                                       "ORDER BY id", (target,))
    assert [a for a, _d in ledger if a == "wait.started"] == ["wait.started"], ledger  # one wait, one deadline
    for action, details in ledger:  # a retry (3.3.2's race) continued the same wait: same deadline
        assert action in ("wait.started", "wait.resumed") and details["deadline"] == deadline, ledger
    if tis[TASK]["try_number"] > 1:
        assert [a for a, _d in ledger][1:] == ["wait.resumed"] * (tis[TASK]["try_number"] - 1), ledger

    # paged once for the warning, then resolved: the message marked resolved and one reply in its thread
    pages = warning_pages()
    assert len(pages) == 1, fake_slack.messages()
    replies = [m for m in fake_slack.messages() if m.get("thread_ts")]
    assert len(replies) == 1 and "Resolved" in replies[0]["text"], replies
    updates = [c.body for c in fake_slack.calls_to("chat.update")]
    assert len(updates) == 1 and "after 1 occurrence(s)" in json.dumps(updates[0]), updates
    assert databases.query("legacy", f"SELECT status, occurrences FROM {SCHEMA}.alerts WHERE dedup_key = %s",
                           (f"gate:dual_write_health:{DAG_ID}:{run_id}:{TASK}",)) == [("resolved", 1)]

    # both triggerers ran the gate's trigger: each wrote its own trigger log for the task
    task_logs = stack.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={TASK}"
    for job in (first_triggerer, second_triggerer):
        logs = list(task_logs.glob(f"attempt=*.log.trigger.{job}.log"))
        assert logs, sorted(p.name for p in task_logs.iterdir())
        assert "gate dual_write_health" in "".join(p.read_text() for p in logs)
    second = "".join(p.read_text() for p in task_logs.glob(f"attempt=*.log.trigger.{second_triggerer}.log"))
    assert "Trigger fired event" in second and GATE_PASSED.search(second), second[-2000:]
