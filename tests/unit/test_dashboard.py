"""Migration health dashboard: view model, charts, JSON/HTML routes on real Postgres, month-scale load.

The routes are exercised in-process with FastAPI's TestClient and Airflow's ``get_user`` dependency
overridden (the real login is covered by tests/test_dashboard_browser.py against `airflow api-server`).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from migration_engine import control
from migration_engine.dashboard import charts, model, page, phases
from migration_engine.dashboard.asgi import LazyASGIApp
from migration_engine.dashboard.queries import HOURS, MINUTES, ROUTINE_ACTIONS, Windows, consistency_time_column
from tests.dashboard_fixtures import EXPECTED, SCHEMA, create_consistency_runs, seed_known_figures, seed_month_of_stats

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]


# --- pure parts -----------------------------------------------------------------------------
def test_pct_and_statuses():
    assert model.pct(1, 4) == 25.0
    assert model.pct(0, 0) is None and model.pct(5, None) is None  # no data is not 0 %
    kw = {"warn_below": 95.0, "critical_below": 90.0, "min_volume": 100}
    assert model.rate_status(None, 0, **kw) == model.NO_DATA
    assert model.rate_status(89.9, 1000, **kw) == model.CRITICAL
    assert model.rate_status(94.0, 1000, **kw) == model.WARNING
    assert model.rate_status(99.0, 10, **kw) == model.LOW_VOLUME
    assert model.rate_status(99.0, 1000, **kw) == model.OK


def test_windows_are_utc_and_bounded():
    w = Windows.at(datetime(2026, 1, 12, 14, 37, 12, tzinfo=UTC))
    assert w.hours_start == datetime(2026, 1, 11, 15, 0, tzinfo=UTC)
    assert len(w.hour_slots()) == HOURS and w.hour_slots()[-1] == datetime(2026, 1, 12, 14, 0, tzinfo=UTC)
    assert len(w.minute_slots()) == MINUTES and w.minute_slots()[-1] == datetime(2026, 1, 12, 14, 37, tzinfo=UTC)
    with pytest.raises(ValueError, match="timezone-aware"):
        Windows.at(datetime(2026, 1, 12))


def test_fill_keeps_gaps():
    slots = [datetime(2026, 1, 1, h, tzinfo=UTC) for h in range(4)]
    rows = [{"hour": slots[1], "attempts": 10, "failures": 1}, {"hour": slots[3], "attempts": 4, "failures": 0}]
    points = model._rate_points(rows, "hour", slots, "attempts", "failures", "success_pct")
    assert [p["success_pct"] for p in points] == [None, 90.0, None, 100.0]


@pytest.mark.parametrize("flags, state", [
    ({}, "old_only"),
    ({"dual_write_enabled": True}, "dual_write"),
    ({"dual_write_enabled": True, "write_to_new": True, "keep_old_sync": True}, "cut_over_syncing"),
    ({"write_to_new": True}, "cut_over"),
    ({"write_to_new": True, "maintenance_mode": True}, "maintenance"),
])
def test_write_state(flags, state):
    assert model.write_state(flags)[0] == state


def test_consistency_run_shapes():
    assert model.run_status({"status": "PASSED"}) == "passed"
    assert model.run_status({"status": "inconsistent"}) == "failed"
    assert model.run_status({"passed": False}) == "failed"
    assert model.run_status({"rows": 3}) == "unknown"
    assert consistency_time_column([("id", "bigint"), ("started_at", "timestamp with time zone"),
                                    ("finished_at", "timestamp with time zone")]) == "started_at"
    assert consistency_time_column([("finished_at", "timestamp without time zone")]) == "finished_at"
    assert consistency_time_column([("finished_at", "text")]) is None


T0 = datetime(2026, 1, 12, 14, 0, tzinfo=UTC)


def _run(dag_id, state, run_id="manual__1", tasks=(), start=T0 - timedelta(minutes=30), end=T0 - timedelta(minutes=5)):
    return {"dag_id": dag_id, "run_id": run_id, "state": state, "run_type": "manual", "queued_at": start,
            "start_date": start, "end_date": end if state in ("success", "failed") else None, "dry_run": False,
            "newer_dry_run": None,
            "tasks": [{"task_id": t, "map_index": -1, "state": st, "start_date": start, "end_date": None,
                       "try_number": 1} for t, st in tasks]}


def _raw(gates=(), steps=(), run_failures=None):
    return {"windows": Windows.at(T0), "gates": list(gates), "steps": list(steps),
            "run_failures": run_failures or {}}


def test_phase_state_is_the_latest_dag_runs_state_not_inferred():
    """Phase 3 with no steps but a successful run is "success"; phase 2 with only ``applied`` steps and a
    successful run is "success"; a failed phase 5 whose last gate row says waiting is "failed", its
    gate marked stale and not counted as a live wait; DAGs without a run are "none"."""
    airflow = {"available": True, "base_url": "http://af:8080", "runs": {
        "migration_phase2_dual_write": _run("migration_phase2_dual_write", "success"),
        "migration_phase3_data_migration": _run("migration_phase3_data_migration", "success"),
        "migration_phase5_cutover": _run("migration_phase5_cutover", "failed", run_id="manual__5",
                                         tasks=[("checklist", "failed"), ("read_rollout_10pct", "upstream_failed")]),
        "migration_setup": _run("migration_setup", "running", tasks=[("check_connections", "deferred")]),
    }}
    gates = [{"gate": "dual_write_health", "status": "waiting", "figures": {"window": "48h"}, "reason": "short",
              "dag_id": "migration_phase5_cutover", "run_id": "manual__5", "evaluated_at": T0 - timedelta(minutes=20)}]
    steps = [{"phase": "phase2", "step_id": "dw", "status": "applied", "updated_at": T0}]
    rows = {p["phase"]: p for p in phases.phases_section(_raw(gates, steps), airflow)}
    assert list(rows) == [k for k, _, _ in phases.PHASE_DAGS]  # other DAGs only once they ran
    assert rows["phase2"]["state"] == "success" and rows["phase2"]["step_counts"] == {"applied": 1}
    assert rows["phase3"]["state"] == "success" and rows["phase1"]["state"] == "none"
    p5 = rows["phase5"]
    assert p5["state"] == "failed" and [t["task"] for t in p5["failed_tasks"]] == ["checklist"]
    assert p5["reason"] == "no reason recorded in the control schema: see the task's log in Airflow"
    assert p5["run"]["url"] == "http://af:8080/dags/migration_phase5_cutover/runs/manual__5"
    assert p5["failed_tasks"][0]["url"].endswith("/runs/manual__5/tasks/checklist")
    assert p5["gates"][0]["stale"] and p5["gate_state"] == "none"
    assert [t["task"] for t in rows["setup"]["active_tasks"]] == ["check_connections"]


def test_failure_reason_sources_in_order():
    run = _run("migration_phase4_validation", "failed", tasks=[("gate_task", "failed")])
    task = run["tasks"][0]
    gate = {"gate": "consistency_fresh", "status": "failed", "reason": "last run is 3 h old", "run_id": "manual__1",
            "figures": {}}
    other_run_gate = {**gate, "run_id": "manual__0"}
    audit = {"audit": [{"action": "step.failed", "target": "phase4.x", "reason": "Title",
                        "details": {"task_id": "gate_task", "error": "lock timeout on listings"}}]}
    alert = {"alerts": [{"task_id": "gate_task", "last_seen": T0,
                         "last_text": "Task failed.\n```Refused: writes moved```"}]}
    assert phases.failure_reason(run, task, [gate], audit) == (
        "gate consistency_fresh failed: last run is 3 h old", "gate_results")
    assert phases.failure_reason(run, task, [other_run_gate], {**audit, **alert})[0] == (
        "step.failed phase4.x: lock timeout on listings")
    assert phases.failure_reason(run, task, [], alert) == ("Refused: writes moved", "alerts")
    stale_alert = {"alerts": [{**alert["alerts"][0], "last_seen": T0 - timedelta(days=1)}]}
    assert phases.failure_reason(run, task, [], stale_alert)[1] == "none"  # an older failure is not this run's
    # A wait that timed out (a checklist sensor, which does not page by itself): its gate's last reason,
    # only for the task that evaluated it.
    waiting = {"gate": "cutover_dual_write", "status": "waiting", "reason": "no dual-write data in 1h",
               "run_id": "manual__1", "figures": {"task_id": "gate_task"}}
    assert phases.failure_reason(run, task, [waiting], audit) == (
        "gate cutover_dual_write still waiting when the task gave up: no dual-write data in 1h", "gate_results")
    other_task = {**waiting, "figures": {"task_id": "check_backup"}}
    assert phases.failure_reason(run, task, [other_task], {})[1] == "none"


def test_a_refusal_is_the_failed_runs_reason_over_the_first_failed_task():
    """Phase 5 too early: the five checklist sensors time out (their gates' reasons), checklist_result
    refuses with the one combined text (every short check and its next step) - that is the run's reason."""
    run = _run("migration_phase5_cutover", "failed", run_id="manual__5",
               tasks=[("check_backup", "failed"), ("checklist_result", "failed")])
    gates = [{"gate": "pre_cutover_backup", "status": "waiting", "reason": "no verified backup", "run_id": "manual__5",
              "figures": {"task_id": "check_backup"}, "dag_id": "migration_phase5_cutover", "evaluated_at": T0}]
    combined = ("pre-cutover checklist not met (backup); on-call paged once:\n• backup: none\n"
                "   _Next:_ run migration_preflight_backup")
    failures = {"migration_phase5_cutover": {"audit": [{
        "action": "refused", "target": "migration_phase5_cutover.checklist_result", "reason": combined,
        "details": {"task_id": "checklist_result", "refusal": "ChecklistNotMet"}}], "alerts": []}}
    airflow = {"available": True, "base_url": "", "runs": {"migration_phase5_cutover": run}}
    (p5,) = [p for p in phases.phases_section(_raw(gates=gates, run_failures=failures), airflow)
             if p["dag_id"] == "migration_phase5_cutover"]
    assert p5["state"] == "failed"
    assert [(t["task"], t["reason_source"]) for t in p5["failed_tasks"]] == [
        ("check_backup", "gate_results"), ("checklist_result", "audit_ledger")]
    assert p5["reason"] == f"refused migration_phase5_cutover.checklist_result: {combined}"


def test_airflow_unavailable_is_said_not_guessed():
    rows = phases.phases_section(_raw(), {"available": False, "error": "reading Airflow's DAG runs failed: X"})
    assert {p["state"] for p in rows} == {"unknown"}
    assert rows[0]["reason"] == "reading Airflow's DAG runs failed: X"


def test_gate_in_words_keeps_figures_one_click_away():
    g = phases.gate_words({"gate": "dual_write_health", "status": "waiting", "reason": "dual-write listings: 97.10% "
                           "success over the last 48h, below the required 99%",
                           "figures": {"entity": "listings", "success_pct": 97.1, "attempts": 5000, "window": "48h",
                                       "window_start": "2026-01-10T14:00:00+00:00",
                                       "window_end": "2026-01-12T14:00:00+00:00", "minutes_with_data": 2800,
                                       "largest_gap": "12m", "max_gap_allowed": "5m",
                                       "gaps": ["2026-01-11 02:00–02:12 UTC"], "evaluator": "a.b.c",
                                       "task_id": "gate_x"}, "dag_id": "d", "run_id": "r", "evaluated_at": T0})
    assert g["title"] == "Dual write health"
    assert g["window"] == "window 48h (2026-01-10T14:00:00+00:00 – 2026-01-12T14:00:00+00:00)"
    assert g["data"] == ("2,800 minutes with data; 5,000 attempts; largest gap 12m (allowed 5m); "
                         "1 gap(s) too long: 2026-01-11 02:00–02:12 UTC")
    assert g["measured"] == {"entity": "listings", "success_pct": 97.1}  # no evaluator path, no task id
    assert g["figures"]["evaluator"] == "a.b.c"  # still there, behind the click


def test_line_chart_breaks_at_gaps_and_escapes():
    svg = charts.line_chart(chart_id="c", title="<x>", labels=["a", "b", "c", "d"],
                            series=[charts.Series("s", [99.0, None, 98.0, 97.5])],
                            thresholds=[charts.Threshold(95, "warn")])
    assert svg.count("<polyline") == 2  # the gap splits the line
    assert svg.count("<circle") == 3 and 'data-points="3"' in svg
    assert "<x>" not in svg and "&lt;x&gt;" in svg
    empty = charts.line_chart(chart_id="e", title="t", labels=["a"], series=[charts.Series("s", [None])])
    assert "no data in this window" in empty


def test_nice_range_shows_small_differences():
    lo, hi = charts.nice_range([99.2, 99.9], ceil=100)
    assert 98 <= lo < 99.2 and hi == 100


# --- routes on a real database ---------------------------------------------------------------
def _load_plugin():
    from migration_engine.airflow.plugins import MigrationDashboardPlugin

    return MigrationDashboardPlugin


@pytest.fixture
def client(databases):
    """The plugin's own app (as the api-server mounts it), with Airflow's login check stubbed."""
    from airflow.api_fastapi.core_api.security import get_user
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    entry = _load_plugin().fastapi_apps[0]
    entry["app"].app.dependency_overrides[get_user] = lambda: object()
    root = FastAPI()
    root.mount(entry["url_prefix"], entry["app"])
    with TestClient(root) as c:
        yield c


def test_plugin_module_is_cheap_to_import():
    """Every task process imports plugin modules: the plugin must not pull in the API server's modules."""
    code = ("import sys; import migration_engine.airflow.plugins as m; "
            "p = m.MigrationDashboardPlugin; "
            "assert p.external_views[0]['href'] == '/migration/dashboard', p.external_views; "
            "heavy = [n for n in ('fastapi', 'airflow.api_fastapi.core_api.security') if n in sys.modules]; "
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with pytest.raises(ValueError, match="package.module:function"):
        LazyASGIApp("no_colon_here")


def _metrics(html: str) -> dict[str, str]:
    return {m.group(1): re.sub(r"<[^>]+>", "", m.group(2))
            for m in re.finditer(r'<span data-metric="([^"]+)">(.*?)</span>', html)}


def _fake_runs(monkeypatch, runs, available=True):
    from migration_engine.airflow import dashboard_app

    monkeypatch.setattr(dashboard_app, "latest_runs", lambda: {
        "available": available, "error": None if available else "reading Airflow's DAG runs failed: boom",
        "base_url": "", "runs": {r["dag_id"]: r for r in runs}})


def test_dashboard_shows_seeded_figures(databases, client, monkeypatch):
    _fake_runs(monkeypatch, [_run("migration_phase1_schema_prep", "success", run_id="manual__0"),
                             _run("migration_phase2_dual_write", "success"),
                             _run("migration_phase4_validation", "failed", tasks=[("fresh", "failed")])])
    conn = databases.connect()
    seed_known_figures(conn)
    conn.close()

    resp = client.get("/migration/dashboard/data")
    assert resp.status_code == 200, resp.text
    data = resp.json()
    dw = data["dual_write"]
    assert (dw["attempts"], dw["failures"], dw["success_pct"], dw["status"]) == (1000, 60, 94.0, "warning")
    assert dw["recent_success_pct"] == 95.0 and dw["recent_p95_latency_ms"] == 120.0
    assert len(dw["hourly"]) == HOURS and len(dw["minutely"]) == MINUTES
    assert sum(p["attempts"] or 0 for p in dw["hourly"]) == 1000
    assert data["shadow"]["match_pct"] == 99.95 and data["shadow"]["status"] == "ok"
    assert data["read_rollout"]["read_new_pct"] == 25
    assert data["read_rollout"]["error_increase_points"] == 0.25
    assert data["write_cutover"]["state"] == "dual_write"
    assert data["consistency"] == {**data["consistency"], "available": False, "note": "no consistency runs yet"}
    rows = {p["phase"]: p for p in data["phases"]}
    assert list(rows) == [k for k, _, _ in phases.PHASE_DAGS]  # always all of them, in order
    assert rows["phase1"]["state"] == "success" and rows["phase1"]["title"] == "Phase 1: Schema preparation"
    assert rows["phase2"]["state"] == "success" and rows["phase3"]["state"] == "none"
    latest = {g["gate"]: g for p in data["phases"] for g in p["gates"]}
    assert latest["dual_write_health"]["status"] == "passed"  # the latest evaluation, not the earlier failure
    assert latest["dual_write_health"]["figures"] == {"success_pct": 99.2, "attempts": 5000}
    assert [g["gate"] for g in rows["phase2"]["gates"]] == ["dual_write_health"]
    p4 = rows["phase4"]
    assert p4["state"] == "failed" and p4["gate_state"] == "failed"
    assert p4["reason"] == "gate consistency_fresh failed: last consistency run is 3 h old"
    assert p4["failed_tasks"][0]["url"] == "/dags/migration_phase4_validation/runs/manual__1/tasks/fresh"
    assert [a["title"] for a in data["alerts"]] == ["Dual-write success below 95%"]
    assert data["audit"][0]["action"] == "approve" and data["audit"][0]["actor"] == "alice"

    html = client.get("/migration/dashboard")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    shown = _metrics(html.text)
    for key, value in EXPECTED.items():
        assert shown.get(key) == value, (key, shown.get(key))
    assert "no consistency runs yet" in html.text
    assert html.text.count("<svg") >= 7  # charts, not only tables
    assert html.text.count("<script") == 1 and "<script src" not in html.text  # the inline theme script only
    assert "http://" not in html.text.replace('xmlns="http://www.w3.org/2000/svg"', "")
    phase4 = re.search(r'<div class="phase" data-phase="phase4".*?</div></div>', html.text, re.S)
    assert phase4 and 'data-state="failed"' in phase4.group(0)
    assert "last consistency run is 3 h old" in phase4.group(0) and 'target="_top"' in phase4.group(0)
    # audit entries as who · what · when · why, details behind a click, no JSON dump in the row
    entry = re.search(r'<li class="audit-entry" data-action="approve">(.*?)</li>', html.text, re.S).group(1)
    assert '<b class="who">alice</b>' in entry and "error rates look fine" in entry
    assert "<details" in entry and "{&quot;" not in entry
    assert '<nav id="page-nav"' in html.text and 'href="data-docs/"' in html.text


def test_routine_progress_entries_are_summarised_not_listed(databases, client, monkeypatch):
    """A long copy writes a backfill_progress / backfill_throttle entry a minute per range: they must not
    push the approval off the audit list; they are one row per action and target instead."""
    _fake_runs(monkeypatch, [])
    conn = databases.connect()
    seed_known_figures(conn)  # ends with alice's approval
    for i in range(40):
        control.audit(conn, SCHEMA, actor="backfill", action="backfill_progress", target="listings#0",
                      details={"rows_done": i * 1000}, reason=f"{i * 1000} rows copied")
    for i in range(5):
        control.audit(conn, SCHEMA, actor="backfill", action="backfill_throttle", target="listings#1",
                      details={"rate": 100 * i}, reason=f"rate {100 * i} rows/s")
    conn.close()
    data = client.get("/migration/dashboard/data").json()
    actions = [a["action"] for a in data["audit"]]
    assert "approve" in actions and not {"backfill_progress", "backfill_throttle"} & set(actions), actions
    routine = {(r["action"], r["target"]): r for r in data["audit_routine"]}
    assert routine[("backfill_progress", "listings#0")]["entries"] == 40
    assert routine[("backfill_progress", "listings#0")]["latest_reason"] == "39000 rows copied"
    assert routine[("backfill_throttle", "listings#1")]["entries"] == 5
    html = client.get("/migration/dashboard").text
    table = re.search(r'<table id="audit-routine">.*?</table>', html, re.S).group(0)
    assert "backfill_progress" in table and ">40<" in table and "39000 rows copied" in table


def test_consistency_runs_are_shown_when_the_table_exists(databases, client):
    conn = databases.connect()
    seed_known_figures(conn)
    ids = create_consistency_runs(conn)
    conn.close()
    data = client.get("/migration/dashboard/data").json()
    cons = data["consistency"]
    assert cons["available"]
    assert [r["status"] for r in cons["runs"]] == ["running", "failed", "passed"]
    assert [r["id"] for r in cons["runs"]] == [ids["running"], ids["failed"], ids["passed"]]
    latest = cons["latest"]  # the newest finished run, not the one still running
    assert latest["status"] == "failed" and latest["label"] == "diff"
    assert {k: latest["figures"][k] for k in ("dag_id", "failed_checks", "checked")} == {
        "dag_id": "migration_consistency_hourly", "failed_checks": "listings_diff", "checked": 3}
    statuses = [p["status"] for p in cons["hourly"]]
    assert statuses[-1] == "failed"  # worst of this hour's runs (failed + running)
    assert statuses.count("passed") == 1 and statuses.count("none") == HOURS - 2
    html = client.get("/migration/dashboard").text
    assert _metrics(html)["consistency_latest"] == "Failed" and "failed checks: listings_diff" in html


def test_clear_errors_when_the_dashboard_cannot_load(databases, client, monkeypatch, tmp_path):
    resp = client.get("/migration/dashboard/data")  # no control schema yet
    assert resp.status_code == 503
    assert 'control schema "migration_control" does not exist' in resp.json()["detail"]
    page_resp = client.get("/migration/dashboard")
    assert page_resp.status_code == 503 and "run the migration_setup DAG" in page_resp.text

    monkeypatch.delenv("AIRFLOW_CONN_BREEDERHQ_DB")
    resp = client.get("/migration/dashboard/data")
    assert resp.status_code == 503
    assert "breederhq_db" in resp.json()["detail"] and "AIRFLOW_CONN_BREEDERHQ_DB" in resp.json()["detail"]

    bad = tmp_path / "migration.yaml"
    text = (ROOT / "include" / "migration.yaml").read_text()
    bad.write_text(text.replace("warn_below_pct: 95", "warn_below_pct: 95%"))
    monkeypatch.setenv("MIGRATION_CONFIG", str(bad))
    resp = client.get("/migration/dashboard/data")
    assert resp.status_code == 503 and "dual_write.warn_below_pct" in resp.json()["detail"]


def _plan_nodes(plan: dict) -> list[dict]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes.extend(_plan_nodes(child))
    return nodes


def test_month_of_per_minute_stats_stays_bounded_and_indexed(databases, client):
    """A month of per-minute stats: the endpoint returns bounded series and every query uses an index."""
    from migration_engine import sqlfiles

    conn = databases.connect()
    now = datetime.now(UTC)
    from migration_engine import control

    control.ensure_control_schema(conn, SCHEMA)
    t0 = time.monotonic()
    counts = seed_month_of_stats(conn, now)
    print(f"\nseeded a month of per-minute stats in {time.monotonic() - t0:.1f}s: {counts}")
    assert counts["dual_write_stats"] == 2 * 43_200

    timings = []
    for _ in range(3):
        t0 = time.monotonic()
        resp = client.get("/migration/dashboard/data")
        timings.append(time.monotonic() - t0)
        assert resp.status_code == 200, resp.text
    t0 = time.monotonic()
    assert client.get("/migration/dashboard").status_code == 200
    page_time = time.monotonic() - t0
    print(f"data endpoint on a month of stats: {', '.join(f'{t * 1000:.0f} ms' for t in timings)}; "
          f"HTML page {page_time * 1000:.0f} ms; response {len(resp.content):,} bytes")
    data = resp.json()
    assert len(data["dual_write"]["hourly"]) == HOURS and len(data["dual_write"]["minutely"]) == MINUTES
    assert sum(1 for p in data["dual_write"]["hourly"] if p["attempts"]) >= HOURS - 1
    assert data["dual_write"]["attempts"] == pytest.approx(2 * 100 * 1440, rel=0.01)  # 24 h, not 30 days
    assert len(data["audit"]) == 25 and len(json.dumps(data)) < 200_000
    assert sum(len(p["gates"]) for p in data["phases"]) == 6

    # Each query's plan reads the big tables through an index, never by a sequential scan.
    w = Windows.at(now)
    queries = {
        "dual_write_hourly": {"window_start": w.hours_start, "window_end": w.window_end},
        "dual_write_by_entity": {"window_start": w.window_start, "window_end": w.window_end,
                                 "recent_start": w.recent_start},
        "shadow_hourly": {"window_start": w.hours_start, "window_end": w.window_end},
        "path_totals": {"window_start": w.window_start, "window_end": w.window_end, "recent_start": w.recent_start},
        "gates_latest": {},
        "audit_recent": {"max_rows": 25, "routine_actions": ROUTINE_ACTIONS},
        "audit_routine": {"since": w.window_start, "max_rows": 25, "routine_actions": ROUTINE_ACTIONS},
        # why a failed run failed: bounded by the run's start/end on the ledger's time index
        "run_failure_audit": {"since": now - timedelta(hours=1), "until": now, "dag_id": "migration_phase2_dual_write",
                              "run_id": "manual__1"},
    }
    with conn.cursor() as cur:
        for name, params in queries.items():
            text = sqlfiles.render(cur, f"dashboard/{name}.sql", {"schema": SCHEMA}, params)
            cur.execute("EXPLAIN (FORMAT JSON) " + text)
            nodes = _plan_nodes(cur.fetchone()[0][0]["Plan"])
            seq_scans = [n.get("Relation Name") for n in nodes if n["Node Type"] == "Seq Scan"]
            indexes = sorted({n["Index Name"] for n in nodes if n.get("Index Name")})
            assert not seq_scans, (name, seq_scans)
            assert indexes, (name, [n["Node Type"] for n in nodes])
            cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + text)
            print(f"  {name}: {cur.fetchone()[0][0]['Execution Time']:.1f} ms via {indexes}")
    conn.close()


def test_page_renders_without_data():
    w = Windows.at(datetime(2026, 1, 12, 14, 0, tzinfo=UTC))
    raw = {"windows": w, "flags": [], "dual_write_hourly": [], "dual_write_minutely": [], "dual_write_by_entity": [],
           "shadow_hourly": [], "shadow_by_cohort": [], "shadow_mismatches": [], "path_hourly": [],
           "path_totals": [], "gates": [], "steps": [], "alerts": [], "audit": [],
           "consistency": {"available": False, "note": "no consistency runs yet", "runs": []}}
    from migration_engine.config import load_config

    view = model.build(raw, load_config())
    assert view["dual_write"]["status"] == "no_data" and view["dual_write"]["success_pct"] is None
    assert [e["entity"] for e in view["dual_write"]["entities"]] == ["listings"]  # configured, no data yet
    html = page.render(view)
    shown = _metrics(html)
    assert shown["dual_write_success_pct_24h"] == "—" and shown["read_new_pct"] == "0%"
    assert html.count('class="phase"') == len(phases.PHASE_DAGS) and "Phase 6: Cleanup" in html
    # no Airflow runs given: "unknown", never guessed from the control tables
    assert html.count('data-state="unknown"><div class="phase-head">') == len(phases.PHASE_DAGS)
    assert (w.now - timedelta(hours=1)) == view["windows"]["recent_start"]


# --- Data Docs ------------------------------------------------------------------------------
@pytest.fixture
def docs_site(tmp_path, monkeypatch):
    """A GX Data Docs site in ``consistency.data_docs_dir`` (two runs of one suite), a secret beside it,
    and a symlink inside it that leads out."""
    import yaml

    from migration_engine.config import DEFAULT_CONFIG_PATH

    gx = tmp_path / "shared" / "gx"
    site = gx / "uncommitted" / "data_docs" / "local_site"
    (site / "expectations").mkdir(parents=True)
    (site / "index.html").write_text("<html>GX index</html>")
    (site / "expectations" / "listings_row_parity.html").write_text("<html>suite</html>")
    for run, stamp, text in (("hourly-1", "20261201T120155.717380Z", "old run"),
                             ("hourly-2", "20261201T130001.000001Z", "new run")):
        d = site / "validations" / "listings_row_parity" / run / stamp
        d.mkdir(parents=True)
        (d / "zdm_legacy-findings_listings_row_parity.html").write_text(f"<html>{text}</html>")
    (site / "validations" / "never_run").mkdir()
    (tmp_path / "shared" / "secret.txt").write_text("api-server secret")
    (site / "escape").symlink_to(tmp_path / "shared")
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data.setdefault("consistency", {})["data_docs_dir"] = str(gx)
    cfg_path = tmp_path / "migration.yaml"
    cfg_path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("MIGRATION_CONFIG", str(cfg_path))
    return site


def test_data_docs_latest_per_suite_and_traversal_refused(docs_site):
    from migration_engine.dashboard import datadocs

    found = {s.suite: s for s in datadocs.suites(docs_site)}
    assert set(found) == {"listings_row_parity", "never_run"}
    latest = found["listings_row_parity"]
    assert latest.run_name == "hourly-2" and latest.validations == 2
    assert latest.latest.startswith("validations/listings_row_parity/hourly-2/")
    assert found["never_run"].latest is None
    assert datadocs.resolve(docs_site, "").name == "index.html"
    assert datadocs.resolve(docs_site, latest.latest).read_text() == "<html>new run</html>"
    for bad in ("../secret.txt", "../../../../etc/passwd", "/etc/passwd", "expectations/../../secret.txt",
                "escape/secret.txt", ".hidden", "a\\..\\b", "x\x00y", "a" * 2000):
        with pytest.raises(datadocs.DataDocsRefused):
            datadocs.resolve(docs_site, bad)
    with pytest.raises(datadocs.DataDocsNotFound, match="no Data Docs page"):
        datadocs.resolve(docs_site, "validations/nope.html")
    with pytest.raises(datadocs.DataDocsNotFound, match="has not been validated yet"):
        datadocs.latest_page(docs_site, "never_run")
    with pytest.raises(datadocs.DataDocsRefused):
        datadocs.latest_page(docs_site, "../x")
    with pytest.raises(datadocs.DataDocsNotFound, match="consistency.data_docs_dir must be shared"):
        datadocs.resolve(docs_site / "missing", "index.html")


def test_data_docs_routes(databases, client, docs_site):
    index = client.get("/migration/data-docs/")
    assert index.status_code == 200 and "listings_row_parity" in index.text and str(docs_site) in index.text
    assert 'href="latest/listings_row_parity"' in index.text and "not validated yet" in index.text
    latest = client.get("/migration/data-docs/latest/listings_row_parity", follow_redirects=False)
    assert latest.status_code == 307 and latest.headers["location"].startswith(
        "../site/validations/listings_row_parity/hourly-2/")
    page_resp = client.get("/migration/data-docs/latest/listings_row_parity")
    assert page_resp.status_code == 200 and page_resp.text == "<html>new run</html>"
    # served sandboxed: GX's scripts cannot use the viewer's Airflow session
    assert page_resp.headers["content-security-policy"].startswith("sandbox")
    assert page_resp.headers["x-content-type-options"] == "nosniff"
    assert page_resp.headers["content-type"].startswith("text/html")
    assert client.get("/migration/data-docs/latest/never_run").status_code == 404
    for bad in ("%2e%2e/secret.txt", "..%2Fsecret.txt", "escape/secret.txt", "%2Fetc%2Fpasswd"):
        resp = client.get("/migration/data-docs/site/" + bad)
        assert resp.status_code in (400, 404) and "api-server secret" not in resp.text, (bad, resp.text)
    assert client.get("/migration/data-docs/site/%2e%2e/secret.txt").status_code == 400
    assert client.get("/migration/data-docs/site/nope.html").status_code == 404


def test_consistency_alert_links_the_served_data_docs_not_a_worker_file():
    from migration_engine.config import load_config
    from migration_engine.consistency import alerting
    from migration_engine.dashboard import DATA_DOCS_PATH, URL_PREFIX

    assert alerting.DATA_DOCS_ROUTE == URL_PREFIX + DATA_DOCS_PATH + "/"
    cfg = load_config()
    summary = {"status": "failed", "checked": 3, "failed_checks": ["listings_row_parity"], "checks": [],
               "data_docs": "/var/lib/worker-7/gx/uncommitted/data_docs/local_site/index.html"}
    _title, text, _figures = alerting.alert_content(cfg, summary)
    assert f"Data Docs (latest per suite): {cfg.slack.airflow_base_url.rstrip('/')}/migration/data-docs/" in text
    assert "worker-7" not in text and "file://" not in text


def test_latest_runs_reads_airflow_and_a_dry_run_does_not_decide(databases, airflow_db):
    """The plugin's ORM read on a real metadata DB: the latest real run decides, a newer dry run is named."""
    from migration_engine.airflow.dashboard_app import latest_runs
    from tests.airflow_helpers import run_dag

    assert run_dag("migration_setup")[0] == "success"
    assert run_dag("migration_setup", {"dry_run": True})[0] == "success"
    got = latest_runs(["migration_setup", "migration_never_ran"])
    assert got["available"] and got["error"] is None and list(got["runs"]) == ["migration_setup"]
    run = got["runs"]["migration_setup"]
    assert run["state"] == "success" and not run["dry_run"] and run["newer_dry_run"]
    assert run["newer_dry_run"] != run["run_id"] and run["start_date"] <= run["end_date"]
    assert {t["state"] for t in run["tasks"]} == {"success"} and len(run["tasks"]) >= 3
