"""The consistency run as a step, without Airflow: plan changes nothing, apply stores, verify names keys."""

from __future__ import annotations

import psycopg2
import pytest

from migration_engine import steps
from migration_engine.config import Ddl
from migration_engine.consistency import runs, store
from migration_engine.consistency.step import ConsistencyRun
from migration_engine.errors import ConfigError, VerificationError
from migration_engine.steps import RevertRefused
from tests.consistency_fixtures import SCHEMA, make_config, plant_faults
from tests.snapshots import snapshot, unchanged

pytestmark = pytest.mark.timeout(120)

CONTEXT = {"dag_id": "test_dag", "run_id": "run-1", "task_id": "t"}


def _step(dbs, cfg=None) -> ConsistencyRun:
    connect = {"legacy": lambda: psycopg2.connect(dbs.legacy_dsn), "new": lambda: psycopg2.connect(dbs.new_dsn)}
    return ConsistencyRun(cfg or make_config(), "diff", phase="test", connect=connect)


@pytest.fixture
def runner(consistent):
    conn = consistent.connect("legacy")
    yield steps.StepRunner(conn, schema=SCHEMA, ddl=Ddl(), actor="test:consistency", context=CONTEXT)
    conn.close()


def _snapshots(dbs) -> dict:
    return {side: snapshot(dsn) for side, dsn in (("legacy", dbs.legacy_dsn), ("new", dbs.new_dsn))}


def test_plan_lists_every_check_with_its_sql_and_writes_nothing(consistent, runner):
    plant_faults(consistent)
    before = _snapshots(consistent)
    (planned,) = runner.plan([_step(consistent, make_config(chunk_size=500))])
    after = _snapshots(consistent)
    for side in before:
        assert not unchanged(before[side], after[side]), unchanged(before[side], after[side])
    text = "\n".join(planned.executed)
    assert planned.changed and f'INSERT INTO "{SCHEMA}".consistency_runs' in text
    # chunk_size 500: ~2000 keys per side spread over 1..9,000,001 (the planted extra key) -> 4 chunks,
    # one checksum query per chunk and side
    assert "4 chunk(s)" in text, text[:600]
    assert text.count('width_bucket(t."id", ') == 4
    assert text.count('width_bucket(n."legacy_listing_id", ') == 4
    for check in runs.plan_checks(make_config()):
        assert f"check {check['name']})" in text, check
    assert f'UPDATE "{SCHEMA}".consistency_runs' in text
    assert planned.notes[-1] == "consistency run None: planned"


def test_apply_stores_the_run_verify_names_every_failed_check_and_its_keys(consistent, runner):
    faults = plant_faults(consistent)
    step = _step(consistent)
    (applied,) = runner.apply([step])
    assert applied.changed and applied.notes[-1].endswith(": failed")
    run = store.run_of_dag_run(runner.conn, SCHEMA, dag_id="test_dag", run_id="run-1", kind="diff")
    assert run.status == "failed" and run.failed_checks == ["listings", "transactions_to_invoices"]
    with pytest.raises(VerificationError) as err:
        runner.verify([step])
    message = str(err.value)
    for text in ("listings (entity, failed)", f"missing_in_new: {faults.missing_in_new}",
                 f"missing_in_old: {faults.extra_in_new}", f"changed: {faults.changed_title} (title)",
                 "transactions_to_invoices (reference, failed)", f"{faults.orphan_transaction} → 8000000"):
        assert text in message, (text, message)
    assert steps.get_state(runner.conn, SCHEMA, "test.consistency_run")["status"] == "failed"

    (again,) = runner.apply([step])  # the run of this DAG run is finished: nothing is sent again
    assert not again.changed and "already finished: failed" in again.notes[0]
    with pytest.raises(RevertRefused, match="no automatic revert"):
        runner.revert([step])


def test_apply_continues_the_fan_out_and_records_a_crashed_check_as_error(consistent, runner, monkeypatch):
    step = _step(consistent)
    ex = runner.executor()
    run_pk = step.start(ex)
    assert step.start(ex) == run_pk, "a running run of this DAG run is reused"
    checks = runs.plan_checks(make_config())
    step.check(ex, run_pk, checks[0])  # what the mapped run_check task does

    real = runs.execute_check

    def crash(cfg, check, connect):
        if check["name"] == "transactions":
            raise RuntimeError("connection lost")
        return real(cfg, check, connect)

    monkeypatch.setattr(runs, "execute_check", crash)
    (applied,) = runner.apply([step])
    assert applied.notes[0] == "entity listings: result stored by its task"
    assert "count transactions: checked" in applied.notes
    run = store.run_of_dag_run(runner.conn, SCHEMA, dag_id="test_dag", run_id="run-1", kind="diff")
    assert run.id == run_pk and run.status == "error" and run.failed_checks == ["transactions"]
    with pytest.raises(VerificationError, match="RuntimeError: connection lost"):
        runner.verify([step])


def test_unknown_kind_is_a_config_error(consistent):
    with pytest.raises(ConfigError, match="kind must be one of"):
        ConsistencyRun(make_config(), "partial", phase="x")
