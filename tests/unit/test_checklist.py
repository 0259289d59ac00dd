"""The pre-cutover checklist's own evaluators against real Postgres: read error rate (window mode), backup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.cutover_fixtures import prepare_control, take_backup, write_config

INTERVAL_S = 1.0


def overrides(tmp_path) -> dict:
    return {
        "backup": {"dir": str(tmp_path / "backups"), "verify_restore": False},
        "dual_write": {"poke_interval": "1s", "min_attempts": 50, "max_gap": "10m"},
        "cutover": {
            "dual_write_window": "10m", "shadow_window": "10m", "shadow_min_reads": 100,
            "consistency_max_age": "10m", "backup_max_age": "10m", "checklist_timeout": "30s",
            "check_interval": f"{int(INTERVAL_S * 1000)}ms", "min_requests_per_check": 4,
            "baseline_window": "2m", "max_inconclusive_checks": 3, "flag_propagation": "300ms",
            "rollout": [{"pct": 10, "hold": "4s"}, {"pct": 25, "hold": "3s"}, {"pct": 50, "hold": "3s"},
                        {"pct": 100, "hold": "3s"}],
            "keep_old_sync": "2s",
        },
    }


def test_read_error_rate_gate_window_mode_and_backup_gate(databases, tmp_path, monkeypatch):
    from pathlib import Path

    from migration_engine.cutover.checklist import pre_cutover_backup
    from migration_engine.gates.runner import resolve

    cfg = write_config(tmp_path, monkeypatch, overrides(tmp_path))
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
