"""The backfill CLI (``zdm-backfill`` / ``python -m migration_engine.backfill``) refuses what the DAG refuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.backfill_fixtures import add_listings, compare

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


def _cli(databases, command, *args, config=None, legacy_dsn=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    extra = ["--config", str(config)] if config else []
    return subprocess.run(
        [sys.executable, "-m", "migration_engine.backfill", command, "--legacy-dsn", legacy_dsn or databases.legacy_dsn,
         "--new-dsn", databases.new_dsn, *extra, *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=90)


def _counts(databases):
    return (databases.query("legacy", "SELECT count(*) FROM migration_control.backfill_runs")[0][0],
            databases.query("new", "SELECT count(*) FROM marketplace.service_listings")[0][0])


def test_a_config_that_does_not_match_the_databases_is_refused_before_anything_is_written(databases, backfill_conns,
                                                                                         tmp_path):
    add_listings(databases, 500)
    raw = yaml.safe_load((ROOT / "include" / "migration.yaml").read_text())
    cols = raw["entities"]["listings"]["columns"]
    cols[0]["old"] = "no_such_column"
    raw["entities"]["listings"]["columns"][-1]["lookup"]["table"] = "marketplace.no_such_table"
    broken = tmp_path / "migration.yaml"
    broken.write_text(yaml.safe_dump(raw, sort_keys=False))
    before = _counts(databases)
    for command in ("plan", "run"):
        proc = _cli(databases, command, config=broken)
        assert proc.returncode == 2, (command, proc.stdout, proc.stderr[-2000:])
        # every problem, each with its config path, and no traceback
        assert "entities.listings.columns[0].old" in proc.stderr and "no_such_column" in proc.stderr, proc.stderr
        assert "marketplace.no_such_table" in proc.stderr and "nothing was changed" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
        assert _counts(databases) == before  # no pass planned, no row copied
    # the same databases with the shipped config: the preflight passes and the run copies everything
    proc = _cli(databases, "run", "--workers", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "preflight:" in proc.stderr and "the config matches the databases" in proc.stderr
    assert json.loads(proc.stdout)["entities"]["listings"]["pass"]["status"] == "done"
    assert compare(databases).equal


def test_an_unreachable_database_is_named_without_a_traceback(databases):
    proc = _cli(databases, "plan", legacy_dsn="postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    assert proc.returncode == 1, proc.stderr
    assert "cannot reach a database" in proc.stderr and "Traceback" not in proc.stderr
