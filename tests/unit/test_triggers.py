"""The one polling loop of every deferred wait: fires on a decision, bounded after its deadline."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from migration_engine.airflow.triggers import GateTrigger, PollingTrigger, ReadRolloutHoldTrigger, RecoveryTrigger


class FakeWatch:
    def __init__(self, fire_at: int | None = None, start: dict | None = None):
        self.fire_at, self.start_payload, self.polls, self.at = fire_at, start, 0, []

    def start(self):
        return self.start_payload

    def poll(self):
        self.polls += 1
        self.at.append(datetime.now(UTC))
        return {"status": "done", "polls": self.polls} if self.polls == self.fire_at else None

    def expired(self):
        return {"status": "timeout", "polls": self.polls}


class FakeTrigger(PollingTrigger):
    def __init__(self, watch, *, poll_interval, deadline=None, delay=0.0, overrun=0):
        super().__init__(poll_interval=poll_interval, deadline=deadline)
        self.watch, self.delay, self.overrun_polls = watch, delay, overrun

    def serialize_kwargs(self):
        return {}

    def build_watch(self):
        return self.watch

    def first_delay(self):
        return self.delay


def _events(trigger, timeout=10):
    async def collect():
        return [e.payload async for e in trigger.run()]

    return asyncio.run(asyncio.wait_for(collect(), timeout))


def _in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def test_fires_once_with_the_first_decision():
    watch = FakeWatch(fire_at=3)
    assert _events(FakeTrigger(watch, poll_interval=0.05)) == [{"status": "done", "polls": 3}]


def test_bounded_one_poll_lands_on_the_deadline_then_expired():
    watch = FakeWatch()
    started = datetime.now(UTC)
    (event,) = _events(FakeTrigger(watch, poll_interval=0.2, deadline=_in(0.5)))
    assert event == {"status": "timeout", "polls": watch.polls} and watch.polls == 4  # 0, .2, .4, .5
    assert (watch.at[-1] - started).total_seconds() == pytest.approx(0.5, abs=0.15)


def test_overrun_polls_after_the_deadline_then_expired():
    watch = FakeWatch()
    (event,) = _events(FakeTrigger(watch, poll_interval=0.1, deadline=_in(0.0), overrun=2))
    assert event["status"] == "timeout" and watch.polls == 3  # at the deadline + 2 retries


def test_first_delay_and_start_payload():
    watch = FakeWatch(fire_at=1)
    started = datetime.now(UTC)
    _events(FakeTrigger(watch, poll_interval=0.05, delay=0.3))
    assert (watch.at[0] - started).total_seconds() >= 0.3
    nothing = FakeWatch(start={"status": "failed"})
    assert _events(FakeTrigger(nothing, poll_interval=1)) == [{"status": "failed"}] and nothing.polls == 0
    with pytest.raises(ValueError, match="poll interval must be positive"):
        FakeTrigger(watch, poll_interval=0)


@pytest.mark.parametrize("trigger", [
    GateTrigger("dual_write_health", {"window": 60}, poke_interval=5, deadline=_in(60), dag_id="d", run_id="r",
                task_id="t"),
    ReadRolloutHoldTrigger(conn_id="c", schema="s", entities=["listings"], pct=10, hold_until=_in(60), interval_s=5,
                           max_increase_points=1.0, min_requests=10, baseline_pct=0.5, max_inconclusive=3,
                           snapshot={"at": "x"}, dag_id="d", run_id="r", task_id="t"),
    RecoveryTrigger(conn_id="c", schema="s", entities=["listings"], mode="reads", deadline=_in(60), interval_s=5,
                    propagation_s=1, baseline_pct=None, max_increase_points=1.0, min_requests=10),
], ids=["gate", "rollout_hold", "recovery"])
def test_every_trigger_round_trips_through_its_classpath(trigger):
    from airflow.sdk._shared.module_loading import import_string

    classpath, kwargs = trigger.serialize()
    assert classpath.startswith("migration_engine.airflow.triggers.")
    clone = import_string(classpath)(**kwargs)  # what the triggerer does
    assert clone.serialize() == (classpath, kwargs) and isinstance(clone, PollingTrigger)


def test_a_hold_that_ends_undecided_rolls_back(databases, control_conn):
    """The read-rollout hold fails closed: undecided at its end (its last checks failed) -> read_new_pct = 0."""
    from migration_engine import control
    from migration_engine.config import load_config
    from migration_engine.cutover.hold_watch import HoldWatch

    cfg = load_config()
    control.set_flag(control_conn, cfg.control_schema, "read_new_pct", 25, actor="test", reason="rollout at 25")
    now = datetime.now(UTC)
    watch = HoldWatch(conn_id=cfg.connections.legacy, schema=cfg.control_schema, entities=["listings"], pct=25,
                      hold_until=now.isoformat(), max_increase_points=1.0, min_requests=10, baseline_pct=0.5,
                      max_inconclusive=3, snapshot={"at": now.isoformat(), "since": now.isoformat(), "old": {},
                                                    "new": {}}, dag_id="d", run_id="r", task_id="t")
    event = watch.expired()
    assert event["status"] == "error" and event["rolled_back"] is True and "fail closed" in event["reason"]
    assert control.get_flags(control_conn, cfg.control_schema)["read_new_pct"] == 0
