"""The pre-cutover checklist's own evaluators against real Postgres: read error rate (window mode), backup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.cutover_fixtures import cutover_overrides, prepare_control, take_backup, write_config


def test_read_error_rate_gate_window_mode_and_backup_gate(databases, tmp_path, monkeypatch):
    from pathlib import Path

    from migration_engine.cutover.checklist import pre_cutover_backup
    from migration_engine.gates.runner import resolve

    cfg = write_config(tmp_path, monkeypatch, cutover_overrides(tmp_path))
    prepare_control(databases)
    evaluator, _ = resolve("read_error_rate")
    now = datetime.now(UTC)
    minute = now.replace(second=0, microsecond=0) - timedelta(minutes=1)
    rows = [("listings", minute, "read", "old", "a", 1000, 2), ("listings", minute, "read", "new", "a", 100, 5)]
    databases.query("legacy", "INSERT INTO migration_control.path_stats (entity, bucket, operation, path, instance, "
                              "requests, errors) VALUES (%s, %s, %s, %s, %s, %s, %s), (%s, %s, %s, %s, %s, %s, %s)",
                    [v for r in rows for v in r])
    conn = databases.connect("legacy")
    try:
        bad = evaluator(conn, cfg, now, window="5m")
        assert bad.status == "critical" and bad.figures["new_error_pct"] == 5.0, bad
        assert evaluator(conn, cfg, now, window="5m", min_requests=500).status == "waiting"
        with pytest.raises(ValueError, match="unknown gate param"):
            evaluator(conn, cfg, now, windw="5m")
        assert pre_cutover_backup(conn, cfg, now).status == "waiting"
        manifest = take_backup(cfg)
        assert pre_cutover_backup(conn, cfg, datetime.now(UTC)).passed
        assert pre_cutover_backup(conn, cfg, datetime.now(UTC) + timedelta(minutes=11)).status == "waiting"
        Path(manifest["file"]).unlink()
        gone = pre_cutover_backup(conn, cfg, datetime.now(UTC))
        assert gone.status == "critical" and "is gone" in gone.reason
    finally:
        conn.close()
