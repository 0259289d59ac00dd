"""The runbook's rehearsal, end to end: `make demo` with the rehearsal config, then the driver.

The end-to-end run adds REHEARSAL_TEST_OVERLAY on top of the rehearsal config (shorter holds and
windows, the same steps); the rehearsal config itself is checked by the first test.

The driver (`python -m devtools.rehearsal`) does what docs/runbook.md tells an operator to
do, through Airflow's REST API: setup -> pre-flight backup -> phases 1-5 -> phase 6 archive -> drop
refused before the safe-drop date -> drop after it, answering every approval. This test brings the
demo up exactly like tests/test_demo.py (own DEMO_DIR, free ports, a small data set), runs the
driver as a subprocess and checks the end state in the control schema and the databases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import yaml

from devtools.pgcluster import free_port
from devtools.rehearsal import REHEARSAL_CONFIG, Airflow
from migration_engine.config import load_config, read_config_data
from tests.session import _SESSION_DIR, ROOT
from tests.slack_fixtures import query

# What include/migration.rehearsal.yaml may change, and nothing else (each line says "rehearsal:").
REHEARSAL_KEYS = {
    "dual_write.window", "dual_write.min_attempts", "dual_write.max_gap", "dual_write.poke_interval",
    "dual_write.gate_timeout",
    "cutover.dual_write_window", "cutover.shadow_window", "cutover.shadow_min_reads",
    "cutover.consistency_max_age", "cutover.backup_max_age", "cutover.check_interval",
    "cutover.min_requests_per_check", "cutover.rollout.0.hold", "cutover.rollout.1.hold", "cutover.rollout.2.hold",
    "cutover.rollout.3.hold", "cutover.keep_old_sync", "cutover.approval_timeout", "cutover.checklist_timeout",
    "cutover.baseline_window", "cutover.flag_propagation", "cutover.quiesce_timeout",
    "cutover.rollback_verify_window",
    "cleanup.min_age_after_write_cutover", "cleanup.archive_retention", "cleanup.quiet_period",
    "cleanup.consistency_passing_for", "cleanup.consistency_max_gap",
    "approvals.response_timeout",
}


# What this test shortens on top of the rehearsal config, and nothing else: waits that are only
# waiting (a shadow window filling, the read-rollout holds, keep_old_sync, the quiet period), so the
# whole runbook still runs - every DAG, every approval, the refused drop - on the demo, with less idle
# time. Counts and check intervals stay as the rehearsal sizes them for 40 req/s: a 5 s check at 10 %
# still sees ~14 new-path reads and every hold keeps two checks. The retention stays 30 s (the refused
# drop needs > 10 s before the safe-drop date). The rehearsal config itself is checked above.
REHEARSAL_TEST_OVERLAY = {
    "cutover": {
        "shadow_window": "30s",                                          # rehearsal 45s (~840 reads at 28/s)
        "rollout": [{"pct": 10, "hold": "10s"}, {"pct": 25, "hold": "10s"},  # rehearsal 15/15/15/20s
                    {"pct": 50, "hold": "10s"}, {"pct": 100, "hold": "10s"}],
        "keep_old_sync": "3s",                                           # rehearsal 10s
        # as tests/cutover_fixtures.py: the demo's reads stall for tens of ms on a loaded 2-core CI machine
        # (seen: new-path p95 19 ms vs 7 ms failed the pre-cutover gate); the gate is tested in tests/unit
        "performance_min_increase_ms": 50,                               # rehearsal 10 (the default)
    },
    "cleanup": {"quiet_period": "2s",                                    # rehearsal 5s
                "consistency_passing_for": "20s"},                       # rehearsal 1m: the drop comes sooner
}


def _test_config(directory: Path) -> Path:
    """The rehearsal config with :data:`REHEARSAL_TEST_OVERLAY` on top (an ``extends`` overlay)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "migration.rehearsal-test.yaml"
    path.write_text(yaml.safe_dump({"extends": str(REHEARSAL_CONFIG), **REHEARSAL_TEST_OVERLAY}, sort_keys=False))
    load_config(path)  # valid before the demo starts on it
    return path


def _leaves(data, prefix: str = "") -> dict[str, object]:
    if isinstance(data, dict):
        return {k: v for key, value in data.items() for k, v in _leaves(value, f"{prefix}{key}.").items()}
    if isinstance(data, list):
        return {k: v for i, value in enumerate(data) for k, v in _leaves(value, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): data}


def test_rehearsal_config_differs_from_the_real_one_only_in_durations_and_counts():
    real = _leaves(yaml.safe_load((ROOT / "include" / "migration.yaml").read_text()))
    rehearsal_text = REHEARSAL_CONFIG.read_text()
    overlay = yaml.safe_load(rehearsal_text)
    assert overlay["extends"] == "migration.yaml"  # an overlay of the real config, not a copy of it
    rehearsal = _leaves(read_config_data(REHEARSAL_CONFIG))  # merged with its base, as load_config sees it
    assert real.keys() == rehearsal.keys()
    changed = {k for k in real if real[k] != rehearsal[k]}
    assert changed == REHEARSAL_KEYS, (sorted(changed - REHEARSAL_KEYS), sorted(REHEARSAL_KEYS - changed))
    # The overlay holds nothing but those keys, plus time_scale (pinned) and the rollout's percentages
    # (a list is replaced whole, so its unchanged pcts are restated).
    written = set(_leaves({k: v for k, v in overlay.items() if k != "extends"}))
    assert written - changed == {"time_scale", *(f"cutover.rollout.{i}.pct" for i in range(4))}, sorted(written)
    assert rehearsal["time_scale"] == 1.0  # the values are already short; the demo runs DEMO_TIME_SCALE=1
    for key in changed - {f"cutover.rollout.{i}.hold" for i in range(4)}:
        name = key.rsplit(".", 1)[1]
        line = next(ln for ln in rehearsal_text.splitlines() if ln.strip().startswith(f"{name}:"))
        assert "# rehearsal:" in line, f"{key}: say the real value in a '# rehearsal:' comment ({line!r})"
    cfg = load_config(REHEARSAL_CONFIG)  # and the merged config is valid
    assert cfg.dual_write.window == timedelta(seconds=20) and cfg.dual_write.warn_below_pct == 95


def test_demo_application_flags_the_invoices_behind_marketplace_transactions(databases):
    """What makes phase 3's count parity pass on the demo: the simulator's part of phase 1."""
    from devtools.demo_data import link_marketplace_invoices

    legacy, new = databases.connect("legacy"), databases.connect("new")
    try:
        assert link_marketplace_invoices(legacy, new) is None  # before phase 1: no columns, nothing done
        databases.query("legacy", "ALTER TABLE public.invoices ADD COLUMN is_marketplace_invoice boolean "
                                  "DEFAULT false, ADD COLUMN marketplace_transaction_id integer")
        (txns,) = databases.query("new", "SELECT count(*) FROM marketplace.transactions "
                                         "WHERE tenant_invoice_id IS NOT NULL")
        assert txns[0] > 0
        assert link_marketplace_invoices(legacy, new) == txns[0]
        assert link_marketplace_invoices(legacy, new) == 0  # idempotent: nothing left to change
    finally:
        legacy.close()
        new.close()
    flagged = databases.query("legacy", "SELECT id, marketplace_transaction_id FROM public.invoices "
                                        "WHERE is_marketplace_invoice ORDER BY id")
    expected = databases.query("new", "SELECT tenant_invoice_id, id FROM marketplace.transactions "
                                      "WHERE tenant_invoice_id IS NOT NULL ORDER BY tenant_invoice_id")
    assert flagged == expected


@pytest.mark.timeout(900, method="thread")
def test_rehearsal_runs_the_whole_migration_on_the_demo():
    demo_dir = _SESSION_DIR / "rehearsal-demo"  # traversable by the postgres user (pytest's tmp_path is not)
    pg_port, af_port, slack_port = free_port(), free_port(), free_port()
    env = {**os.environ, "DEMO_DIR": str(demo_dir), "DEMO_PG_PORT": str(pg_port), "DEMO_AIRFLOW_PORT": str(af_port),
           "DEMO_SLACK_PORT": str(slack_port), "DEMO_LISTINGS": "3000", "DEMO_SIM_RATE": "40",
           "DEMO_TIME_SCALE": "1", "MIGRATION_CONFIG": str(_test_config(demo_dir))}
    for key in [k for k in env if k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_HOME"))]:
        del env[key]  # the demo sets its own; the test session's must not leak in
    started = time.monotonic()
    up = subprocess.run([sys.executable, "-m", "devtools.demo", "up"], env=env, cwd=ROOT,
                        capture_output=True, text=True, timeout=240)
    rehearsal = None
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        # the driver's defaults: URL from DEMO_AIRFLOW_PORT, login and backup dir from DEMO_DIR
        rehearsal = subprocess.run([sys.executable, "-m", "devtools.rehearsal", "--dag-timeout", "300", "--poll", "1"],
                                   env=env, cwd=ROOT, capture_output=True, text=True, timeout=660)
        out = rehearsal.stdout
        print(out[-6000:])
        assert rehearsal.returncode == 0, out[-6000:] + rehearsal.stderr[-3000:]
        assert "REHEARSAL PASSED: 10 DAG runs" in out
        assert "refused as the runbook says, at check_drop_allowed" in out and "safe to drop only after" in out

        legacy = f"postgresql://postgres@127.0.0.1:{pg_port}/breederhq"
        new = f"postgresql://postgres@127.0.0.1:{pg_port}/marketplace"
        flags = dict(query(legacy, "SELECT name, value FROM migration_control.feature_flags"))
        assert flags == {"write_to_new": True, "read_new_pct": 100, "dual_write_enabled": False,
                         "keep_old_sync": False, "shadow_read_pct": 0, "maintenance_mode": False}, flags

        actions = dict(query(legacy, "SELECT action, count(*) FROM migration_control.audit_ledger GROUP BY 1"))
        for action, n in {"backup.manifest": 1, "phase1.completed": 1, "phase2_backfill_complete": 1,
                          "phase4_validated": 1, "read_rollout.baseline": 1, "read_rollout.step_passed": 4,
                          "approval.approved": 4, "cleanup.archived": 2, "cleanup.dropped": 1}.items():
            assert actions.get(action) == n, (action, actions)
        assert "read_rollout.rolled_back" not in actions and "approval.rejected" not in actions
        approvers = query(legacy, "SELECT DISTINCT actor FROM migration_control.audit_ledger "
                                   "WHERE action = 'approval.approved'")
        assert approvers == [("admin (admin)",)]  # answered over the REST API as the demo's admin
        changes = query(legacy, "SELECT target, details->>'new' FROM migration_control.audit_ledger "
                                 "WHERE action = 'set_flag' ORDER BY id")
        assert ("shadow_read_pct", "100") in changes and ("write_to_new", "true") in changes
        assert [c[1] for c in changes if c[0] == "read_new_pct"] == ["10", "25", "50", "100"]

        runs = query(legacy, "SELECT kind, status, dag_id FROM migration_control.consistency_runs ORDER BY id")
        assert runs == [("diff", "passed", "migration_phase3_data_migration"),
                        ("full", "passed", "migration_phase4_validation")]
        gates = query(legacy, "SELECT gate, status FROM migration_control.gate_results "
                               "WHERE gate = 'drop_archived_tables' ORDER BY id")
        assert [g[1] for g in gates] == ["failed", "passed"]  # refused before the safe-drop date, then allowed

        # the old tables were archived (renamed) and, after the retention, dropped with the legacy column
        archived = query(legacy, "SELECT details->>'table', details->>'archived_table' FROM "
                                  "migration_control.audit_ledger WHERE action = 'cleanup.archived' ORDER BY id")
        assert archived == [("public.marketplace_listings", "public.marketplace_listings_archived"),
                            ("public.marketplace_listing_images", "public.marketplace_listing_images_archived")]
        for name in ("public.marketplace_listings", "public.marketplace_listings_archived",
                     "public.marketplace_listing_images_archived"):
            assert query(legacy, "SELECT to_regclass(%s)", (name,)) == [(None,)], name
        assert query(legacy, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'invoices' "
                              "AND column_name = 'legacy_marketplace_id'") == [(0,)]
        # the application kept working on the new tables: listings written after the old ones went away
        (after,) = query(new, "SELECT count(*) FROM marketplace.service_listings WHERE legacy_listing_id IS NULL")
        assert after[0] > 0

        # the dashboard agrees with Airflow: every phase row's state is its DAG's latest run state as the
        # REST API reports it (the whole migration ran, setup -> phase 6, on the real demo services)
        creds = json.loads((demo_dir / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())
        user = next(iter(creds))
        api = Airflow(f"http://localhost:{af_port}", user, creds[user])
        view = api.request("GET", "/migration/dashboard/data")
        rows = {r["dag_id"]: r for r in view["phases"]}
        compared = []
        for dag_id, row in rows.items():
            latest = api.request("GET", f"/api/v2/dags/{dag_id}/dagRuns",
                                 params={"order_by": "-run_after", "limit": 1})["dag_runs"]
            expected = latest[0]["state"] if latest else "none"
            assert row["state"] == expected, (dag_id, row["state"], expected, row.get("reason"))
            compared.append((dag_id, expected))
        ran = {d for d, state in compared if state == "success"}
        assert {"migration_setup", "migration_preflight_backup", "migration_phase1_schema_prep",
                "migration_phase2_dual_write", "migration_phase3_data_migration", "migration_phase4_validation",
                "migration_phase5_cutover", "migration_phase6_cleanup"} <= ran, compared

        slack = [json.loads(line) for line in (demo_dir / "slack-messages.jsonl").read_text().splitlines()]
        requests = [m for m in slack if m["method"] == "chat.postMessage"
                    and "Approval needed" in str(m["body"].get("text"))]
        assert len(requests) == 4, [str(m)[:200] for m in slack]
    finally:
        down = subprocess.run([sys.executable, "-m", "devtools.demo", "down"], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        print(f"demo up + rehearsal + down: {time.monotonic() - started:.0f} s")
        assert down.returncode == 0, down.stderr
    status = subprocess.run([sys.executable, "-m", "devtools.demo", "status"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert "running" not in status.stdout, status.stdout


def test_rehearsal_names_a_demo_that_is_not_running(tmp_path: Path):
    """No demo: the driver says what is missing instead of a traceback."""
    env = {**os.environ, "DEMO_DIR": str(tmp_path / "no-demo"), "MIGRATION_CONFIG": str(REHEARSAL_CONFIG)}
    result = subprocess.run([sys.executable, "-m", "devtools.rehearsal"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "REHEARSAL FAILED" in result.stdout and "is the demo up (make demo)?" in result.stdout
