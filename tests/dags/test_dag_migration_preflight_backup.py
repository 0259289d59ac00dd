"""migration_preflight_backup runs for real: a dump that restores, corrupted dumps that are caught,
and a dry run that writes nothing.

How corruption is introduced (the honest way): the DAG first takes a real, verified backup. The
dump file is then truncated on disk - what a full disk, a killed copy or bit rot does - and the DAG
is run again with ``verify_only_path`` pointing at it, so the same verification tasks run against a
really damaged file (no code under test is patched).
"""

from __future__ import annotations

import json
import time

import pytest

from migration_engine import backup, backup_steps
from migration_engine.config import load_config
from migration_engine.steps import StepRunner
from tests.airflow_helpers import xcom
from tests.phase1_fixtures import legacy_conn, run
from tests.snapshots import snapshot, unchanged

# method="thread": a hung dag.test() is not interrupted by the signal method
pytestmark = pytest.mark.timeout(300, method="thread")

DAG = "migration_preflight_backup"
TASKS = ("check_disk_space", "dump_database", "verify_archive", "verify_restore", "record_manifest")


def _counts(databases) -> dict[str, int]:
    tables = databases.query("legacy", "SELECT schemaname || '.' || relname FROM pg_stat_user_tables "
                                       "WHERE schemaname = 'public'")
    return {t: databases.query("legacy", f"SELECT count(*) FROM {t}")[0][0] for (t,) in tables}


def _control_tables(databases) -> set[str]:
    return {t for (t,) in databases.query("legacy", "SELECT schemaname || '.' || relname FROM pg_stat_user_tables "
                                                    "WHERE schemaname = 'migration_control'")}


def _scratch_databases(databases) -> list:
    return databases.query("legacy", "SELECT datname FROM pg_database WHERE datname LIKE 'zdm_restore_check%'")


def _truncate(path, keep: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.fixture
def backup_dir(tmp_path):
    return tmp_path / "backups"


def test_backup_dump_restores_then_truncated_dump_fails_and_pages(databases, airflow_db, fake_slack, backup_dir):
    dr, tasks = run(DAG, {"backup_dir": str(backup_dir)})
    assert dr.state == "success", tasks
    dumps = sorted(backup_dir.glob("*.dump"))
    assert len(dumps) == 1 and dumps[0].name.startswith(databases.legacy_name + "_pre_migration_")
    assert not list(backup_dir.glob("*.partial"))
    manifest = json.loads(backup.manifest_path(dumps[0]).read_text())
    # the control schema exists before the dump now (the steps keep their state in it): the dump
    # carries it too, and the application tables' counts are exactly what is in the database
    assert {t: n for t, n in manifest["tables"].items() if t.startswith("public.")} == _counts(databases)
    assert set(manifest["tables"]) == set(_counts(databases)) | _control_tables(databases)
    assert manifest["tables"]["public.marketplace_listings"] == databases.counts["listings"]
    assert manifest["sha256"] == backup.sha256_file(dumps[0])
    assert manifest["wal_lsn"].count("/") == 1
    ledger = databases.query("legacy", "SELECT details FROM migration_control.audit_ledger "
                                       "WHERE action = 'backup.manifest'")
    assert len(ledger) == 1
    recorded = ledger[0][0]
    assert recorded["sha256"] == manifest["sha256"] and recorded["wal_lsn"] == manifest["wal_lsn"]
    assert recorded["restore_check"]["tables_compared"] == len(manifest["tables"])
    assert recorded["archive_check"]["tables_with_data"] >= len(manifest["tables"])
    assert databases.query("legacy", "SELECT status FROM migration_control.gate_results "
                                     "WHERE gate = 'preflight_backup'") == [("passed",)]
    assert manifest["run_id"] == xcom(dr, "record_manifest")["run_id"] == dr.run_id
    assert _scratch_databases(databases) == []
    assert not [m for m in fake_slack.messages() if "critical" in m.get("channel", "")]
    states = dict(databases.query("legacy", "SELECT step_id, status FROM migration_control.step_state "
                                            "WHERE phase = 'preflight'"))
    assert states == {f"preflight.backup.{s}": "verified" for s in
                      ("disk_space", "dump", "verify_archive", "verify_restore", "record_manifest")}, states
    assert xcom(dr, "record_manifest")["sha256"] == manifest["sha256"]
    dumped = [s for s in xcom(dr, "dump_database")["steps"] if s["step_id"] == "preflight.backup.dump"]
    assert "--format=custom" in "\n".join(dumped[0]["executed"]) and "PGPASSWORD" not in json.dumps(dumped)

    # re-verifying the intact dump passes and records it again for this run (the dump is untouched)
    dr, tasks = run(DAG, {"verify_only_path": str(dumps[0]), "backup_dir": str(backup_dir)})
    assert dr.state == "success", tasks
    assert sorted(backup_dir.glob("*.dump")) == dumps and backup.sha256_file(dumps[0]) == manifest["sha256"]
    entries = databases.query("legacy", "SELECT details->>'run_id', details->>'dump_run_id' FROM "
                                        "migration_control.audit_ledger WHERE action = 'backup.manifest' ORDER BY id")
    assert len(entries) == 2 and entries[1][0] == dr.run_id and entries[1][1] == entries[0][0] == manifest["run_id"]

    _truncate(dumps[0])
    dr, tasks = run(DAG, {"verify_only_path": str(dumps[0])})
    assert dr.state == "failed", tasks
    assert tasks["verify_archive"] == "failed"
    assert tasks["verify_restore"] == "upstream_failed" and tasks["record_manifest"] == "upstream_failed"
    pages = fake_slack.wait_for(count=1, timeout=15)
    critical = [m for m in pages if m["channel"] == "#marketplace-migration-critical"]
    assert critical and "verify_archive" in critical[0]["text"], pages
    assert "SHA-256" in json.dumps(critical[0]), critical[0]
    statuses = databases.query("legacy", "SELECT status, reason FROM migration_control.gate_results "
                                         "WHERE gate = 'preflight_backup' ORDER BY id")
    assert statuses[-1][0] == "failed" and "SHA-256" in statuses[-1][1]


def _snapshots(databases) -> dict:
    return {side: snapshot(dsn) for side, dsn in (("legacy", databases.legacy_dsn), ("new", databases.new_dsn))}


def test_dry_run_writes_no_dump_and_changes_nothing(databases, airflow_db, fake_slack, backup_dir):
    for with_control_schema in (False, True):
        if with_control_schema:  # as in a real migration: migration_setup ran first
            with legacy_conn(databases) as conn:
                backup_steps.prepare(conn, load_config())
        before = _snapshots(databases)
        dr, tasks = run(DAG, {"dry_run": True, "backup_dir": str(backup_dir)})
        assert dr.state == "success", tasks
        assert not backup_dir.exists(), list(backup_dir.rglob("*"))
        after = _snapshots(databases)
        assert {side: unchanged(before[side], after[side]) for side in before} == {"legacy": [], "new": []}
        assert _scratch_databases(databases) == []
        plans = {t: "\n".join(s for step in xcom(dr, t)["steps"] for s in step["executed"]) for t in TASKS}
        assert all(xcom(dr, t)["dry_run"] for t in TASKS)
        assert f"mkdir -p {backup_dir}" in plans["check_disk_space"]
        assert "pg_export_snapshot()" in plans["dump_database"]
        assert f"--format=custom --no-password --file={backup_dir}/{databases.legacy_name}_pre_migration_" \
            in plans["dump_database"]
        assert 'SELECT count(*) FROM "public"."marketplace_listings";' in plans["dump_database"]
        assert "pg_restore --list" in plans["verify_archive"]
        assert 'CREATE DATABASE "zdm_restore_check_' in plans["verify_restore"]
        assert "--no-owner --no-acl --exit-on-error --dbname=zdm_restore_check_" in plans["verify_restore"]
        assert 'DROP DATABASE IF EXISTS "zdm_restore_check_' in plans["verify_restore"]
        assert "audit_ledger" in plans["record_manifest"] and "gate_results" in plans["record_manifest"]
        assert "PGPASSWORD" not in json.dumps(plans)
    assert not [m for m in fake_slack.messages() if "critical" in m.get("channel", "")]


def test_retry_after_a_failed_check_does_not_dump_again(databases, airflow_db, backup_dir):
    """The dump step is idempotent within a run: once this run's dump is finished, applying it again
    sends nothing; a new run takes a new dump and never deletes the verified one."""
    cfg = load_config()
    target = backup.Target.from_conn_id(cfg.connections.legacy)

    context = {"dag_id": DAG, "run_id": "manual__retry"}
    with legacy_conn(databases) as conn:
        backup_steps.prepare(conn, cfg)
        runner = StepRunner(conn, schema=cfg.control_schema, ddl=cfg.ddl, actor="test", context=context)
        steps = backup_steps.steps(cfg, target, backup_dir=backup_dir)
        backup_dir.mkdir()
        (backup_dir / "leftover_pre_migration_20200101_000000.dump.partial").write_bytes(b"half a dump")
        first = runner.apply([steps["dump"]])[0]
        assert first.changed and any(s.startswith("rm -f ") for s in first.executed)
        dumps = sorted(backup_dir.glob("*.dump"))
        assert len(dumps) == 1 and not list(backup_dir.glob("*.partial"))
        again = runner.apply([steps["dump"]])[0]
        assert not again.changed and "already dumped in this run" in again.notes[0]
        assert sorted(backup_dir.glob("*.dump")) == dumps
        with pytest.raises(backup_steps.BackupNotReady, match="have not passed"):
            runner.apply([steps["record"]])
        other = StepRunner(conn, schema=cfg.control_schema, ddl=cfg.ddl, actor="test",
                           context={**context, "run_id": "manual__next"})
        time.sleep(1.1)  # dump names carry a one-second UTC stamp
        assert other.apply([backup_steps.steps(cfg, target, backup_dir=backup_dir)["dump"]])[0].changed
        assert len(sorted(backup_dir.glob("*.dump"))) == 2 and dumps[0].exists()
