"""migration_engine.backup's checks on their own: the restore check catches what the TOC listing
misses, and the disk-space check refuses when there is no room.

A second corruption case re-stamps the manifest with the truncated file's checksum, to show the
restore check catches what ``pg_restore --list`` alone does not (a custom-format archive keeps its
table of contents at the start).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from migration_engine import backup
from migration_engine.config import load_config

pytestmark = pytest.mark.timeout(300, method="thread")


def _scratch_databases(databases) -> list:
    return databases.query("legacy", "SELECT datname FROM pg_database WHERE datname LIKE 'zdm_restore_check%'")


def _truncate(path, keep: float = 0.6) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.fixture
def backup_dir(tmp_path):
    return tmp_path / "backups"


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
