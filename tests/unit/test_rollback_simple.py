"""Rollback scenarios 1 and 2 as steps: refused after the write cutover; the flag step plans, applies, reverts."""

from __future__ import annotations

import pytest

from migration_engine.rollback.simple import RollbackRefused, apply
from tests.cutover_fixtures import flags, ledger, prepare_control, set_flags, write_config

FAST = {"cutover": {"check_interval": "1s", "min_requests_per_check": 10, "baseline_window": "2m",
                    "flag_propagation": "500ms", "rollback_verify_window": "30s", "quiesce_timeout": "20s"}}


def test_rollbacks_1_and_2_refused_after_write_cutover(databases, tmp_path, monkeypatch):
    cfg = write_config(tmp_path, monkeypatch, FAST)
    prepare_control(databases)
    set_flags(databases, read_new_pct=100, write_to_new=True)
    conn = databases.connect("legacy")
    try:
        for scenario in ("reads", "dual_write"):
            with pytest.raises(RollbackRefused, match="migration_rollback_writes"):
                apply(conn, cfg, scenario, actor="test", context={}, reason="test")
    finally:
        conn.close()
    assert flags(databases)["read_new_pct"] == 100


def test_flag_rollback_is_one_audited_step_and_idempotent(databases, tmp_path, monkeypatch):
    from migration_engine import steps
    from migration_engine.rollback.simple import flag_step

    cfg = write_config(tmp_path, monkeypatch, FAST)
    prepare_control(databases)
    set_flags(databases, read_new_pct=25)
    conn = databases.connect("legacy")
    try:
        runner = steps.StepRunner(conn, schema=cfg.control_schema, ddl=cfg.ddl, actor="test")
        (planned,) = runner.plan([flag_step(cfg, "reads", "why")])
        assert planned.changed and "UPDATE" in planned.executed[0] and flags(databases)["read_new_pct"] == 25
        first = apply(conn, cfg, "reads", actor="test", context={}, reason="incident")
        again = apply(conn, cfg, "reads", actor="test", context={}, reason="incident")
        assert first["changed"] and not again["changed"] and flags(databases)["read_new_pct"] == 0
        assert [r[5]["new"] for r in ledger(databases, "set_flag", "read_new_pct")] == [25, 0]  # one real change
        state = steps.get_state(conn, cfg.control_schema, "rollback.reads.flag.read_new_pct")
        assert state["details"]["before"] == {"value": 25}
        runner.revert([flag_step(cfg, "reads", "fixed")])  # the revert restores what it found
        assert flags(databases)["read_new_pct"] == 25
    finally:
        conn.close()
