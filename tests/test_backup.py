"""migration_preflight_backup runs for real: a dump that restores, and corrupted dumps that are caught.

How corruption is introduced (the honest way): the DAG first takes a real, verified backup. The
dump file is then truncated on disk - what a full disk, a killed copy or bit rot does - and the DAG
is run again with ``verify_only_path`` pointing at it, so the same verification tasks run against a
really damaged file (no code under test is patched). A second case re-stamps the manifest with the
truncated file's checksum, to show the restore check catches what ``pg_restore --list`` alone does
not (a custom-format archive keeps its table of contents at the start).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from migration_engine import backup
from migration_engine.config import load_config
from tests.phase1_fixtures import run

# method="thread": a hung dag.test() is not interrupted by the signal method
pytestmark = pytest.mark.timeout(300, method="thread")

DAG = "migration_preflight_backup"


def _counts(databases) -> dict[str, int]:
    tables = databases.query("legacy", "SELECT schemaname || '.' || relname FROM pg_stat_user_tables "
                                       "WHERE schemaname = 'public'")
    return {t: databases.query("legacy", f"SELECT count(*) FROM {t}")[0][0] for (t,) in tables}


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
    # the control schema did not exist when the dump was taken (record_manifest creates it)
    assert manifest["tables"] == _counts(databases)
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
    assert _scratch_databases(databases) == []
    assert not [m for m in fake_slack.messages() if "critical" in m.get("channel", "")]

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


def test_restore_check_catches_what_the_toc_listing_misses(databases, airflow_db, backup_dir):
    cfg = load_config()
    target = backup.Target.from_conn_id(cfg.connections.legacy)
    backup_dir.mkdir()
    manifest = backup.dump(cfg, target, backup_dir, dry_run=False)
    path = Path(manifest["file"])
    _truncate(path, keep=0.5)
    # a dump corrupted before its checksum was taken: the checksum and the TOC listing both pass ...
    stamped = {**manifest, "sha256": backup.sha256_file(path), "size_bytes": path.stat().st_size}
    archive = backup.verify_archive(stamped, manifest["server_version_num"])
    assert archive["sha256_ok"]
    # ... the restore into a scratch database does not
    with pytest.raises(backup.BackupError, match="did not restore correctly"):
        backup.verify_restore(cfg, target, stamped, manifest["server_version_num"])
    assert _scratch_databases(databases) == []


def test_disk_space_check_refuses_when_too_small(databases, tmp_path, monkeypatch):
    cfg = load_config()
    target = backup.Target.from_conn_id(cfg.connections.legacy)
    monkeypatch.setattr(backup.shutil, "disk_usage", lambda _p: type("U", (), {"free": 1024})())
    with pytest.raises(backup.BackupError, match=r"not enough disk space.*backup.disk_space_factor 2.0"):
        backup.check_disk_space(cfg, target, tmp_path / "b", dry_run=False)
