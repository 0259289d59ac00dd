"""A flag flip as a step: dry-run plan changes nothing, apply is audited and idempotent, revert restores."""

from __future__ import annotations

import pytest

from migration_engine import control, steps
from migration_engine.config import Ddl
from migration_engine.errors import Refused, VerificationError
from migration_engine.flag_step import SetFlag

SCHEMA = "migration_control"


@pytest.fixture
def runner(databases):
    conn = databases.connect("legacy")
    control.ensure_control_schema(conn, SCHEMA)
    yield steps.StepRunner(conn, schema=SCHEMA, ddl=Ddl(), actor="test:flag-step", context={"run_id": "r1"})
    conn.close()


def _ledger(runner, flag):
    with runner.conn.cursor() as cur:
        cur.execute(f"SELECT action, actor, details FROM {SCHEMA}.audit_ledger WHERE target = %s ORDER BY id", (flag,))
        return cur.fetchall()


def test_plan_apply_verify_revert(runner):
    step = SetFlag(SCHEMA, "dual_write_enabled", True, phase="phase2", reason="test: dual-write on")
    (planned,) = runner.plan([step])
    assert planned.changed and "UPDATE" in planned.executed[0] and "dual_write_enabled" in planned.executed[0]
    assert control.current_flags(runner.conn, SCHEMA)["dual_write_enabled"] is False  # the plan changed nothing
    assert _ledger(runner, "dual_write_enabled") == []
    with pytest.raises(VerificationError, match="dual_write_enabled is false, not true"):
        runner.verify([step])

    (applied,) = runner.apply([step])
    assert applied.changed and applied.notes == ["dual_write_enabled: false -> true"]
    runner.verify([step])
    flag_entries = [e for e in _ledger(runner, "dual_write_enabled") if e[0] == "set_flag"]
    assert len(flag_entries) == 1 and flag_entries[0][1] == "test:flag-step"
    assert flag_entries[0][2]["old"] is False and flag_entries[0][2]["new"] is True
    assert flag_entries[0][2]["run_id"] == "r1"

    (again,) = runner.apply([step])  # a re-run sends nothing and writes no second ledger entry
    assert not again.changed and again.notes == ["dual_write_enabled is already true"]
    assert len([e for e in _ledger(runner, "dual_write_enabled") if e[0] == "set_flag"]) == 1
    assert steps.get_state(runner.conn, SCHEMA, step.step_id)["details"]["before"] == {"value": False}

    (reverted,) = runner.revert([step])
    assert reverted.notes == ["dual_write_enabled: true -> false"]
    assert control.current_flags(runner.conn, SCHEMA)["dual_write_enabled"] is False
    assert steps.get_state(runner.conn, SCHEMA, step.step_id)["status"] == "reverted"


def test_bad_value_is_refused_before_anything_runs(runner):
    with pytest.raises(control.ControlError, match="between 0 and 100"):
        SetFlag(SCHEMA, "read_new_pct", 150, phase="phase5", reason="x")


def test_a_step_without_revert_refuses(runner):
    class Once(steps.Step):
        step_id, phase, title = "t.once", "t", "one-way"

        def before_state(self, ex):
            return {}

        def apply(self, ex):
            return []

        def problems(self, ex):
            return []

    runner.apply([Once()])
    with pytest.raises(Refused, match="has no automatic revert"):
        runner.revert([Once()])
