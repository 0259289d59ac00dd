"""The backfill pass as a step: the plan shows ranges and SQL and writes nothing; apply records or resumes
the pass; verify is the per-row checksum diff; there is no revert."""

from __future__ import annotations

import psycopg2
import pytest

from migration_engine import control, steps
from migration_engine.backfill import RangeWorker, finish_run
from migration_engine.backfill.settings import backfill_settings
from migration_engine.backfill.step import BackfillPass
from migration_engine.config import load_config
from migration_engine.errors import VerificationError
from migration_engine.steps import RevertRefused
from tests.backfill_fixtures import add_listings, compare

SCHEMA = "migration_control"


@pytest.fixture
def cfg():
    return load_config()


@pytest.fixture
def runner(databases):
    conn = databases.connect("legacy")
    control.ensure_control_schema(conn, SCHEMA)
    yield steps.StepRunner(conn, schema=SCHEMA, ddl=load_config().ddl, actor="test:backfill-step",
                           context={"run_id": "r1"})
    conn.close()


def _step(databases, cfg, **kw):
    s = backfill_settings(cfg, parallelism=kw.pop("parallelism", 3), batch_size=400)
    return BackfillPass(cfg, "listings", s, connect_legacy=lambda: psycopg2.connect(databases.legacy_dsn),
                        connect_new=lambda: psycopg2.connect(databases.new_dsn), **kw), s


def _passes(databases):
    return databases.query("legacy", f"SELECT id, status FROM {SCHEMA}.backfill_runs ORDER BY id")


def test_plan_apply_resume_verify_and_no_revert(databases, runner, cfg):
    add_listings(databases, 3000)
    step, s = _step(databases, cfg)

    (planned,) = runner.plan([step])
    text = "\n".join(planned.executed)
    assert planned.changed and "new pass" in text and "in 3 range(s)" in text
    assert "COPY (" in text and "ON CONFLICT" in text and "OFFSET" not in text
    assert step.plan.dry_run and len(step.plan.jobs) == 3 and step.plan.run_id is None
    # the plan wrote nothing: no backfill pass or range, no step state, no ledger entry
    assert _passes(databases) == []
    assert databases.query("legacy", f"SELECT count(*) FROM {SCHEMA}.backfill_ranges")[0][0] == 0
    assert databases.query("legacy", f"SELECT count(*) FROM {SCHEMA}.step_state")[0][0] == 0
    assert databases.query("legacy", f"SELECT count(*) FROM {SCHEMA}.audit_ledger")[0][0] == 0

    (applied,) = runner.apply([step])
    assert applied.changed and "new pass" in applied.notes[0]
    ((pass_id, status),) = _passes(databases)
    assert status == "running" and step.plan.run_id == pass_id and len(step.plan.jobs) == 3
    assert applied.executed == planned.executed  # apply recorded exactly what the plan showed

    with pytest.raises(VerificationError, match=f"pass {pass_id} of listings is still running"):
        runner.verify([step])

    # applying again (a retried plan task) resumes the open pass, never starts a second one
    again, _ = _step(databases, cfg)
    (replanned,) = runner.plan([again])
    assert f"resume pass {pass_id} (0 of 3 ranges done)" in "\n".join(replanned.executed)
    runner.apply([again])
    assert _passes(databases) == [(pass_id, "running")] and again.plan.resumed

    lc, nc = (lambda: psycopg2.connect(databases.legacy_dsn)), (lambda: psycopg2.connect(databases.new_dsn))
    for job in again.plan.jobs:  # the work items (mapped tasks in the DAG)
        RangeWorker(cfg, "listings", job.run_id, job.range_no, s, lc, nc).run()
    assert finish_run(runner.conn, SCHEMA, pass_id)["status"] == "done"
    runner.verify([step])
    assert steps.get_state(runner.conn, SCHEMA, step.step_id)["status"] == "verified"
    assert compare(databases).equal

    # verify is the per-row checksum comparison: one changed title fails it, naming the key
    key = databases.query("new", "SELECT min(legacy_listing_id) FROM marketplace.service_listings")[0][0]
    databases.query("new", "UPDATE marketplace.service_listings SET title = 'tampered' WHERE legacy_listing_id = %s",
                    (key,))
    with pytest.raises(VerificationError, match=rf"changed=1.*changed: {key} \(title\)"):
        runner.verify([step])

    with pytest.raises(RevertRefused, match="dual-writes the new table"):
        runner.revert([step])


def test_restart_cancels_the_open_pass(databases, runner, cfg):
    step, _ = _step(databases, cfg, parallelism=2)
    runner.apply([step])
    ((first, _),) = _passes(databases)
    restart, _ = _step(databases, cfg, parallelism=2, restart=True)
    (planned,) = runner.plan([restart])
    assert "new pass" in "\n".join(planned.executed)
    assert _passes(databases) == [(first, "running")]  # planning a restart cancels nothing
    runner.apply([restart])
    assert [status for _id, status in _passes(databases)] == ["cancelled", "running"]
    actions = [a for (a,) in databases.query("legacy", f"SELECT action FROM {SCHEMA}.audit_ledger ORDER BY id")]
    assert actions.count("backfill_planned") == 2 and "backfill_cancelled" in actions
