"""Phases and gates: each phase's state as Airflow recorded it, and its gates' latest evaluation in words.

Why Airflow's DAG runs and not the control tables: a phase's state is what its latest DAG run says
(queued / running / success / failed). Inferring it from ``step_state`` and ``gate_results`` was
wrong in the ways operators hit: a phase whose DAG has no steps stayed "not started" after its run
succeeded, a phase whose steps are only ``applied`` stayed "in progress", and a gate's last
``waiting`` row kept a failed run "in progress" forever.

The Airflow layer (``migration_engine.airflow.dashboard_app.latest_runs``) reads the runs and their
task instances with Airflow's ORM and hands them here as plain dicts (:data:`RUN_KEYS`), so this
module and its tests need no Airflow. The control schema adds what Airflow does not store: why a
task failed (the failed gate's reason of that run, the ledger's ``*.failed`` entries of that run,
the failure alert the task's callback recorded), the gates' figures and the step counts.
"""

from __future__ import annotations

import re
from typing import Any

from migration_engine.ui_links import ui_path

# The DAGs the section always lists, in the migration's order: (row key, title, dag_id).
PHASE_DAGS: tuple[tuple[str, str, str], ...] = (
    ("setup", "Setup", "migration_setup"),
    ("backup", "Pre-flight backup", "migration_preflight_backup"),
    ("phase1", "Phase 1: Schema preparation", "migration_phase1_schema_prep"),
    ("phase2", "Phase 2: Dual-write", "migration_phase2_dual_write"),
    ("phase3", "Phase 3: Data migration", "migration_phase3_data_migration"),
    ("phase4", "Phase 4: Validation", "migration_phase4_validation"),
    ("phase5", "Phase 5: Cutover", "migration_phase5_cutover"),
    ("phase6", "Phase 6: Cleanup", "migration_phase6_cleanup"),
)
# Listed only once they have a run or a gate evaluation.
OTHER_DAGS: tuple[tuple[str, str, str], ...] = (
    ("consistency_hourly", "Hourly consistency check", "migration_consistency_hourly"),
    ("phase3_repair", "Phase 3: Repair differences", "migration_phase3_repair"),
    ("phase1_rollback", "Rollback: phase 1 schema", "migration_phase1_rollback"),
    ("rollback_reads", "Rollback: reads (scenario 1)", "migration_rollback_reads"),
    ("rollback_dual_write", "Rollback: dual-write (scenario 2)", "migration_rollback_dual_write"),
    ("rollback_writes", "Rollback: writes (scenario 3)", "migration_rollback_writes"),
)
TRACKED_DAG_IDS: tuple[str, ...] = tuple(d for _, _, d in PHASE_DAGS + OTHER_DAGS)

# What the Airflow layer passes per DAG (``runs[dag_id]``); every value is plain data.
RUN_KEYS = ("dag_id", "run_id", "state", "run_type", "queued_at", "start_date", "end_date", "dry_run", "newer_dry_run",
            "tasks")
TASK_KEYS = ("task_id", "map_index", "state", "start_date", "end_date", "try_number")

# Airflow's run states -> the page's words and badge colours.
RUN_STATE_LABELS = {"success": "Succeeded", "failed": "Failed", "running": "Running", "queued": "Queued",
                    "none": "Not run yet", "unknown": "Unknown"}
RUN_STATE_STATUS = {"success": "passed", "failed": "failed", "running": "running", "queued": "waiting",
                    "none": "none", "unknown": "unknown"}
FAILED_TASK_STATES = ("failed", "upstream_failed")
ACTIVE_TASK_STATES = ("running", "deferred", "queued", "scheduled", "up_for_retry", "up_for_reschedule",
                      "restarting", "awaiting_hitl")
_STEP_PHASE_RE = re.compile(r"phase[_-]?(\d+)", re.IGNORECASE)
# Figures that identify where an evaluation came from, not what it measured: in the details only.
_PLUMBING = {"evaluator", "task_id", "dag_id", "run_id", "map_index", "try_number", "gate", "window_start",
             "window_end"}
_WINDOW_KEYS = ("window", "window_start", "window_end")
_SUFFICIENCY_KEYS = ("minutes_with_data", "events", "attempts", "reads_compared", "requests", "largest_gap",
                     "max_gap_allowed", "gaps")


def run_url(base_url: str, dag_id: str, run_id: str | None = None, task_id: str | None = None,
            map_index: int | None = None) -> str:
    """The Airflow 3 UI page of a DAG, run or task instance (``base_url`` may be "" for same-origin)."""
    return base_url.rstrip("/") + ui_path(dag_id, run_id, task_id, map_index)


def step_row_key(step_phase: str) -> str:
    """The row a ``step_state.phase`` belongs to: ``phase3`` -> phase 3's DAG, ``backup`` -> backup."""
    m = _STEP_PHASE_RE.fullmatch(step_phase or "")
    if m:
        return f"phase{int(m.group(1))}"
    if step_phase.startswith("rollback."):
        return f"rollback_{step_phase.split('.', 1)[1].replace('-', '_')}"
    return step_phase or "(no phase)"


def _task_label(t: dict[str, Any]) -> str:
    mi = t.get("map_index")
    return t["task_id"] + (f"[{mi}]" if isinstance(mi, int) and mi >= 0 else "")


def _fmt_num(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, list):
        return "; ".join(str(x) for x in v)
    return str(v)


def gate_words(gate: dict[str, Any]) -> dict[str, Any]:
    """A gate's latest evaluation for a reader: status, the reason sentence (the evaluator writes the
    measured figure against its threshold there), the window, data sufficiency; every figure stays
    available in ``figures`` (shown behind a click)."""
    figures = gate.get("figures") or {}
    if not isinstance(figures, dict):
        figures = {"value": figures}
    window = None
    if figures.get("window"):
        window = f"window {figures['window']}"
        if figures.get("window_start") and figures.get("window_end"):
            window += f" ({figures['window_start']} – {figures['window_end']})"
    data = []
    if "minutes_with_data" in figures:
        data.append(f"{_fmt_num(figures['minutes_with_data'])} minutes with data")
    for key, word in (("attempts", "attempts"), ("reads_compared", "reads compared"), ("requests", "requests")):
        if key in figures and figures[key] is not None:
            data.append(f"{_fmt_num(figures[key])} {word}")
            break
    if figures.get("largest_gap"):
        gap = f"largest gap {figures['largest_gap']}"
        if figures.get("max_gap_allowed"):
            gap += f" (allowed {figures['max_gap_allowed']})"
        data.append(gap)
    if figures.get("gaps"):
        gaps = figures["gaps"] if isinstance(figures["gaps"], list) else [figures["gaps"]]
        data.append(f"{len(gaps)} gap(s) too long: " + "; ".join(str(g) for g in gaps[:3])
                    + (" …" if len(gaps) > 3 else ""))
    measured = {k: v for k, v in figures.items()
                if k not in _PLUMBING and k not in _WINDOW_KEYS and k not in _SUFFICIENCY_KEYS
                and not isinstance(v, (dict, list)) and v is not None}
    return {
        "gate": gate["gate"],
        "title": gate["gate"].replace("_", " ").capitalize(),
        "status": gate["status"],
        "reason": gate.get("reason") or "",
        "window": window,
        "data": "; ".join(data) or None,
        "measured": measured,
        "figures": figures,
        "dag_id": gate.get("dag_id"),
        "run_id": gate.get("run_id"),
        "evaluated_at": gate.get("evaluated_at"),
        "age_seconds": gate.get("age_seconds"),
    }


def failure_reason(run: dict[str, Any], task: dict[str, Any], gates: list[dict[str, Any]],
                   failures: dict[str, Any]) -> tuple[str, str]:
    """(reason, where it came from) for a failed task of ``run``; best source first.

    1. a gate of this run that failed/was critical: its reason (the measured figure and the bar);
    2. this task's gate still waiting when the task gave up (a wait that timed out, e.g. a phase-5
       checklist sensor, which does not page on its own): the gate's last reason;
    3. the ledger's failure entries of this run and task (a step's error, a ``refused`` entry the
       layer writes for every refusal);
    4. the failure alert this task's callback recorded during the run (the exception text);
    5. otherwise: say where to look.
    """
    if task["state"] == "upstream_failed":
        return "not run: an upstream task failed", "airflow"
    own = [g for g in gates if g.get("run_id") == run["run_id"] and g["status"] in ("failed", "critical")]
    by_task = [g for g in own if (g.get("figures") or {}).get("task_id") in (None, task["task_id"])]
    if by_task or own:
        g = (by_task or own)[0]
        return f"gate {g['gate']} {g['status']}: {g.get('reason') or '(no reason recorded)'}", "gate_results"
    waited = [g for g in gates if g.get("run_id") == run["run_id"] and g["status"] == "waiting"
              and (g.get("figures") or {}).get("task_id") == task["task_id"]]
    if waited:
        g = waited[0]
        return (f"gate {g['gate']} still waiting when the task gave up: "
                f"{g.get('reason') or '(no reason recorded)'}", "gate_results")
    for entry in failures.get("audit", []):
        details = entry.get("details") or {}
        if details.get("task_id") in (None, task["task_id"]):
            text = details.get("error") or entry.get("reason") or entry["action"]
            target = f" {entry['target']}" if entry.get("target") else ""
            return f"{entry['action']}{target}: {text}", "audit_ledger"
    started = task.get("start_date") or run.get("start_date")
    for alert in failures.get("alerts", []):
        if alert.get("task_id") == task["task_id"] and (started is None or alert["last_seen"] >= started):
            return _alert_error(alert["last_text"]), "alerts"
    return "no reason recorded in the control schema: see the task's log in Airflow", "none"


def _alert_error(text: str) -> str:
    """The exception from a task-failure alert's text (inside ``` fences), else the text."""
    m = re.search(r"```(.*?)```", text or "", re.DOTALL)
    return (m.group(1) if m else text or "").strip()


def _row(key: str, title: str, dag_id: str, run: dict[str, Any] | None, airflow: dict[str, Any],
         gates: list[dict[str, Any]], steps: list[dict[str, Any]], failures: dict[str, Any]) -> dict[str, Any]:
    base = airflow.get("base_url") or ""
    counts: dict[str, int] = {}
    for s in steps:
        counts[s["status"]] = counts.get(s["status"], 0) + 1
    row: dict[str, Any] = {
        "phase": key, "title": title, "dag_id": dag_id, "dag_url": run_url(base, dag_id),
        "step_counts": counts, "run": None, "failed_tasks": [], "active_tasks": [], "task_counts": {},
        "reason": None,
    }
    if not airflow.get("available"):
        row["state"] = "unknown"
        row["reason"] = airflow.get("error") or "Airflow's run state was not read"
    elif run is None:
        row["state"] = "none"
    else:
        tasks = run.get("tasks") or []
        row["state"] = run["state"] if run["state"] in RUN_STATE_LABELS else "unknown"
        row["run"] = {k: run.get(k) for k in RUN_KEYS if k != "tasks"}
        row["run"]["url"] = run_url(base, dag_id, run["run_id"])
        for t in tasks:
            row["task_counts"][t["state"] or "none"] = row["task_counts"].get(t["state"] or "none", 0) + 1
        for t in tasks:
            info = {"task": _task_label(t), "state": t["state"], "start_date": t.get("start_date"),
                    "end_date": t.get("end_date"), "try_number": t.get("try_number"),
                    "url": run_url(base, dag_id, run["run_id"], t["task_id"], t.get("map_index"))}
            if t["state"] == "failed":
                info["reason"], info["reason_source"] = failure_reason(run, t, gates, failures)
                row["failed_tasks"].append(info)
            elif t["state"] in ACTIVE_TASK_STATES:
                row["active_tasks"].append(info)
        if row["state"] == "failed":
            # A refusal states the run's decision (e.g. phase 5's checklist_result: every short check and
            # its next step in one text), so it is the run's reason over the first failed task's.
            refused = [t for t in row["failed_tasks"] if t["reason_source"] == "audit_ledger"
                       and t["reason"].startswith("refused ")]
            first = (refused or row["failed_tasks"] or [None])[0]
            row["reason"] = (first["reason"] if first
                             else "the run was marked failed without a failed task (timed out or set by hand)")
    words = []
    current = row["run"]["run_id"] if row["run"] else None
    for g in gates:
        w = gate_words(g)
        w["this_run"] = current is not None and g.get("run_id") == current
        # A wait ends with its run: a "waiting" row of a run that is over is history, not a live wait.
        w["stale"] = row["state"] not in ("running", "queued") and g["status"] == "waiting"
        words.append(w)
    row["gates"] = words
    statuses = {g["status"] for g in words if not g["stale"]}
    row["gate_state"] = next((s for s in ("failed", "critical", "warning", "waiting") if s in statuses),
                             "passed" if statuses else "none")
    return row


def phases_section(raw: dict[str, Any], airflow: dict[str, Any]) -> list[dict[str, Any]]:
    """Every phase DAG (always) and the other migration DAGs that ran or evaluated gates, in order.

    ``airflow``: ``{"available": bool, "error": str | None, "base_url": str, "runs": {dag_id: run}}``
    from the Airflow layer (``available`` False: the state is shown as unknown with the error).
    """
    now = raw["windows"].now
    runs = airflow.get("runs") or {}
    gates_by_dag: dict[str, list[dict[str, Any]]] = {}
    for g in raw["gates"]:
        at = g.get("evaluated_at")
        gates_by_dag.setdefault(g.get("dag_id") or "(no DAG)", []).append(
            {**g, "age_seconds": None if at is None else max(0.0, (now - at).total_seconds())})
    steps_by_key: dict[str, list[dict[str, Any]]] = {}
    for s in raw["steps"]:
        steps_by_key.setdefault(step_row_key(s["phase"]), []).append(s)
    failures = raw.get("run_failures") or {}
    out = []
    for key, title, dag_id in PHASE_DAGS:
        out.append(_row(key, title, dag_id, runs.get(dag_id), airflow, gates_by_dag.pop(dag_id, []),
                        steps_by_key.get(key, []), failures.get(dag_id, {})))
    for key, title, dag_id in OTHER_DAGS:
        gates = gates_by_dag.pop(dag_id, [])
        if runs.get(dag_id) or gates:
            out.append(_row(key, title, dag_id, runs.get(dag_id), airflow, gates, steps_by_key.get(key, []),
                            failures.get(dag_id, {})))
    for dag_id in sorted(gates_by_dag):  # gates recorded by a DAG this page does not know
        out.append(_row(dag_id, dag_id, dag_id, runs.get(dag_id), airflow, gates_by_dag[dag_id], [], {}))
    return out


def failed_runs(airflow: dict[str, Any]) -> list[dict[str, Any]]:
    """The latest runs that failed: the control schema is asked why (``queries.run_failures``)."""
    out = []
    for run in (airflow.get("runs") or {}).values():
        if run and run.get("state") == "failed":
            failed = [t["task_id"] for t in run.get("tasks") or [] if t["state"] == "failed"]
            out.append({"dag_id": run["dag_id"], "run_id": run["run_id"], "start_date": run.get("start_date"),
                        "end_date": run.get("end_date"), "task_ids": failed})
    return out

