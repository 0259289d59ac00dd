"""Rehearse the whole migration on the demo, exactly as docs/runbook.md tells an operator to.

    MIGRATION_CONFIG=$PWD/include/migration.rehearsal.yaml DEMO_TIME_SCALE=1 DEMO_SIM_RATE=40 make demo
    .venv/bin/python -m devtools.rehearsal            # URL, login and backup dir from .demo/

Why a driver and not only a page of instructions: a runbook nobody executes rots. This module is
section 9 of docs/runbook.md ("Rehearsing the whole migration on the demo") as code, step for step,
through the same Airflow REST API the UI uses - unpause a DAG, trigger it with the Params the
runbook names, answer each approval the runbook tells on-call to answer (``PATCH .../hitlDetails``,
what the Required Actions page and the Slack button do), wait for the run, and print what happened
(task states, the figures from the tasks' XCom). Anything unexpected - a failed task, an approval
the runbook does not mention, a run that does not finish in time - stops it with a non-zero exit
naming the DAG and the task, and the reason from the task log.

It needs nothing but the REST API (stdlib HTTP) and the rehearsal config file (to know the
compressed durations it has to wait for, e.g. "archive only 15 s after the write cutover").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devtools import ROOT as PROJECT_ROOT
from migration_engine.config import CONFIG_ENV, MigrationConfig, load_config

REHEARSAL_CONFIG = PROJECT_ROOT / "include" / "migration.rehearsal.yaml"
FRESH_DEMO = ("A rehearsal starts from a fresh demo with the rehearsal config:\n"
              f"  make demo-stop; rm -rf .demo; MIGRATION_CONFIG={REHEARSAL_CONFIG} DEMO_TIME_SCALE=1 "
              "DEMO_SIM_RATE=40 make demo")
TERMINAL = {"success", "failed"}
TASK_DONE = {"success", "failed", "skipped", "upstream_failed", "removed"}


class RehearsalError(RuntimeError):
    """The rehearsal cannot go on; the message names the DAG / task and the reason."""


# --- REST client ---------------------------------------------------------------------------
class Airflow:
    """The few Airflow 3 REST calls an operator's script needs (JWT from /auth/token, re-login on 401)."""

    def __init__(self, base_url: str, user: str, password: str, *, timeout: float = 30.0) -> None:
        self.base = base_url.rstrip("/")
        self.user, self.password, self.timeout = user, password, timeout
        self.token: str | None = None

    def _call(self, method: str, path: str, body: Any = None, params: dict | None = None,
              auth: bool = True) -> Any:
        url = self.base + path + (("?" + urllib.parse.urlencode(params)) if params else "")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, method=method, data=data)
        req.add_header("Content-Type", "application/json")
        req.add_header("Accept", "application/json")
        if auth and self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:
            raw = resp.read()
            return json.loads(raw) if raw else None

    def request(self, method: str, path: str, body: Any = None, params: dict | None = None) -> Any:
        """One call; logs in first / again on 401; retries a few times while the API server is unreachable."""
        for attempt in range(6):
            try:
                if self.token is None:
                    self.login()
                return self._call(method, path, body, params)
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and attempt == 0:
                    self.token = None
                    continue
                detail = exc.read().decode(errors="replace")[:500]
                raise RehearsalError(f"{method} {path} -> HTTP {exc.code}: {detail}") from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                # a read timeout after a POST/PATCH may have been applied: never send those twice
                if attempt == 5 or (isinstance(exc, TimeoutError) and method != "GET"):
                    raise RehearsalError(f"{method} {self.base}{path}: Airflow is not reachable ({exc}); "
                                         "is the demo up (make demo-status)?") from None
                time.sleep(2 + 2 * attempt)
        raise AssertionError("unreachable")

    def login(self) -> None:
        try:
            answer = self._call("POST", "/auth/token", {"username": self.user, "password": self.password}, auth=False)
        except urllib.error.HTTPError as exc:
            raise RehearsalError(f"login to {self.base} as {self.user!r} failed: HTTP {exc.code} "
                                 "(wrong --user/--password?)") from None
        self.token = answer["access_token"]

    # DAGs and runs
    def dag_ids(self) -> set[str]:
        return {d["dag_id"] for d in self.request("GET", "/api/v2/dags", params={"limit": 100})["dags"]}

    def import_errors(self) -> list[dict]:
        return self.request("GET", "/api/v2/importErrors")["import_errors"]

    def dag_details(self, dag_id: str) -> dict:
        return self.request("GET", f"/api/v2/dags/{dag_id}/details")

    def unpause(self, dag_id: str) -> None:
        self.request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict) -> str:
        run = self.request("POST", f"/api/v2/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
        return run["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}")["state"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances",
                            params={"limit": 200})["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> Any:
        try:
            entry = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task_id}"
                                 "/xcomEntries/return_value", params={"map_index": map_index})
        except RehearsalError as exc:
            if "HTTP 404" in str(exc):
                return None
            raise
        value = entry.get("value")
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> list[Any]:
        answer = self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task_id}/logs/"
                              f"{try_number}", params={"full_content": "true", "map_index": map_index})
        return answer.get("content") or []

    def event_logs(self, dag_id: str, run_id: str, task_id: str) -> list[dict]:
        return self.request("GET", "/api/v2/eventLogs", params={
            "dag_id": dag_id, "run_id": run_id, "task_id": task_id, "limit": 50})["event_logs"]

    # approvals
    def pending_approvals(self, dag_id: str, run_id: str) -> list[dict]:
        return self.request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/hitlDetails",
                            params={"response_received": "false"})["hitl_details"]

    def answer(self, dag_id: str, run_id: str, task_id: str, map_index: int, option: str) -> dict:
        return self.request("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task_id}/"
                            f"{map_index}/hitlDetails", {"chosen_options": [option], "params_input": {}})


def _q(run_id: str) -> str:
    return urllib.parse.quote(run_id, safe="")


# --- output --------------------------------------------------------------------------------
_T0 = time.monotonic()


def say(text: str = "", indent: int = 0) -> None:
    stamp = f"[{time.monotonic() - _T0:6.1f}s]"
    for line in str(text).splitlines() or [""]:
        print(f"{stamp} {' ' * indent}{line}", flush=True)


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _pick(data: Any, *keys: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        return {}
    return {k: data[k] for k in keys if k in data and data[k] is not None}


# --- one DAG run -----------------------------------------------------------------------------
@dataclass
class Run:
    dag_id: str
    run_id: str
    state: str = "queued"
    tasks: dict[str, str] = field(default_factory=dict)  # "task_id" or "task_id[i]" -> state
    approvals: list[str] = field(default_factory=list)   # "task_id: Approve"
    seconds: float = 0.0


@dataclass
class Step:
    """One section of the runbook: a DAG, its trigger Params, the approvals on-call gives, the outcome."""

    number: str
    dag_id: str
    title: str
    conf: dict[str, Any] = field(default_factory=dict)
    approvals: dict[str, str] = field(default_factory=dict)  # task_id -> "Approve" / "Reject"
    expect_failure_at: str | None = None  # the run must fail at exactly this task (a refusal)
    report: Callable[[Airflow, Run], None] | None = None
    hint: str = ""  # added to a failure message


class Rehearsal:
    def __init__(self, api: Airflow, cfg: MigrationConfig, *, backup_dir: Path, cfg_source: str = str(REHEARSAL_CONFIG),
                 poll: float = 2.0, dag_timeout: float = 600.0, drop: str = "both", answer_delay: float = 5.0) -> None:
        if drop not in ("refuse", "wait", "both", "skip"):
            raise ValueError(f"drop must be refuse, wait, both or skip, got {drop!r}")
        self.api, self.cfg, self.backup_dir, self.cfg_source = api, cfg, backup_dir, cfg_source
        self.poll, self.dag_timeout, self.drop, self.answer_delay = poll, dag_timeout, drop, answer_delay
        self.runs: list[Run] = []
        self.write_cutover_at: datetime | None = None
        self.safe_drop_at: datetime | None = None

    # steps ------------------------------------------------------------------------------------
    def steps_before_cleanup(self) -> list[Step]:
        return [
            Step("1", "migration_setup", "check the config, both connections, every table; create the control schema",
                 report=self._report_setup, hint=FRESH_DEMO),
            Step("2", "migration_preflight_backup", "pg_dump from one snapshot, verified by a test restore",
                 conf={"backup_dir": str(self.backup_dir)}, report=self._report_backup),
            Step("3", "migration_phase1_schema_prep", "phase 1: columns, indexes, defaults + constraints",
                 report=self._report_phase1),
            Step("4", "migration_phase2_dual_write", "phase 2: dual-write on, health gate, backfill, gate again",
                 report=self._report_phase2),
            Step("5", "migration_phase3_data_migration", "phase 3: counts, missing/extra/changed rows, references",
                 report=self._report_consistency),
            Step("6", "migration_phase4_validation", "phase 4: shadow reads on, shadow-read gate, GX suites",
                 conf={"shadow_read_pct": 100}, report=self._report_phase4),
            Step("7", "migration_phase5_cutover", "phase 5: checklist, read rollout 10/25/50/100 %, write cutover",
                 approvals={"approve_read_cutover": "Approve", "approve_write_cutover": "Approve"},
                 report=self._report_phase5),
        ]

    def archive_step(self) -> Step:
        return Step("8", "migration_phase6_cleanup", "phase 6: dual-write off, archive (rename) the old tables",
                    conf={"action": "archive"}, approvals={"approve_archive": "Approve"},
                    report=self._report_archive)

    def drop_refused_step(self) -> Step:
        return Step("9", "migration_phase6_cleanup", "phase 6 drop BEFORE the safe-drop date: must be refused",
                    conf={"action": "drop"}, expect_failure_at="check_drop_allowed")

    def drop_step(self) -> Step:
        return Step("10", "migration_phase6_cleanup", "phase 6 drop after the safe-drop date",
                    conf={"action": "drop"}, approvals={"approve_drop": "Approve"}, report=self._report_drop)

    # the whole rehearsal ------------------------------------------------------------------------
    def run(self) -> list[Run]:
        self.preflight()
        for step in self.steps_before_cleanup():
            self.execute(step)
        self.wait_for_cleanup_age()
        self.execute(self.archive_step())
        if self.drop in ("refuse", "both"):
            left = (self.safe_drop_at - datetime.now(UTC)).total_seconds() if self.safe_drop_at else 0
            if left > 10:
                self.execute(self.drop_refused_step())
            else:  # the compressed retention is nearly over already: a drop now would be allowed
                say(f"\nStep 9 skipped: only {left:.0f} s left before the safe-drop date, too close to show "
                    "the refusal")
        if self.drop in ("wait", "both"):
            self.wait_for_safe_drop()
            self.execute(self.drop_step())
        return self.runs

    def preflight(self) -> None:
        """Step 0 of the runbook: Airflow answers, every DAG is parsed, the demo runs the rehearsal config."""
        say(f"Step 0: Airflow at {self.api.base}, config {self.cfg.name!r}")
        wanted = {"migration_setup", "migration_preflight_backup", "migration_phase1_schema_prep",
                  "migration_phase2_dual_write", "migration_phase3_data_migration", "migration_phase4_validation",
                  "migration_phase5_cutover", "migration_phase6_cleanup"}
        deadline = time.monotonic() + 180
        while True:
            missing = wanted - self.api.dag_ids()
            if not missing:
                break
            if time.monotonic() > deadline:
                errors = self.api.import_errors()
                raise RehearsalError(f"DAGs not in Airflow after 180 s: {sorted(missing)}; import errors: "
                                     f"{_short(errors, 1000)}")
            time.sleep(self.poll)
        errors = self.api.import_errors()
        if errors:
            raise RehearsalError("Airflow reports DAG import errors: " + "; ".join(
                f"{e.get('filename')}: {_short(e.get('stack_trace', ''), 300)}" for e in errors))
        # The durations this driver waits for come from the config file; Airflow must use the same ones.
        params = self.api.dag_details("migration_phase2_dual_write").get("params") or {}
        served = (params.get("gate_timeout_seconds") or {}).get("value")
        expected = self.cfg.dual_write.gate_timeout.total_seconds()
        if served is None or abs(float(served) - expected) > 0.5:
            raise RehearsalError(
                f"Airflow does not run with this config: phase 2's gate timeout is {served} s there, {expected:g} s "
                f"in {self.cfg_source} (MIGRATION_CONFIG / DEMO_TIME_SCALE differ).\n{FRESH_DEMO}")
        say(f"  {len(wanted)} DAGs parsed, no import errors; windows as in the config "
            f"(phase 2 gate window {self.cfg.dual_write.window.total_seconds():g} s, rollout holds "
            f"{[int(s.hold.total_seconds()) for s in self.cfg.cutover.rollout]} s)")

    def execute(self, step: Step) -> Run:
        say("")
        say(f"Step {step.number}: {step.dag_id} - {step.title}")
        self.api.unpause(step.dag_id)
        run = Run(step.dag_id, self.api.trigger(step.dag_id, step.conf))
        self.runs.append(run)
        say(f"  triggered run {run.run_id}" + (f" with {json.dumps(step.conf)}" if step.conf else ""))
        started = time.monotonic()
        answered: set[str] = set()
        seen: dict[str, float] = {}
        while True:
            self._refresh(run)
            for detail in self.api.pending_approvals(run.dag_id, run.run_id):
                ti = detail["task_instance"]
                task_id, map_index = ti["task_id"], ti.get("map_index", -1)
                if task_id in answered:
                    continue
                if task_id not in step.approvals:
                    raise RehearsalError(f"{run.dag_id}/{task_id}: asks for an approval the runbook does not "
                                         f"expect here ({detail.get('subject')!r}); answer it in the UI yourself")
                if task_id not in seen:
                    seen[task_id] = time.monotonic()
                    say(f"  approval requested: {task_id} - {detail.get('subject')!r}")
                # Like a human, answer a few seconds after the request: Airflow 3.3.2's scheduler fails a
                # task whose answer lands before it has processed the pausing run's exit (docs/runbook.md).
                if time.monotonic() - seen[task_id] < self.answer_delay:
                    continue
                option = step.approvals[task_id]
                self.api.answer(run.dag_id, run.run_id, task_id, map_index, option)
                answered.add(task_id)
                run.approvals.append(f"{task_id}: {option}")
                say(f"  answered {option} (PATCH .../taskInstances/{task_id}/{map_index}/hitlDetails)")
            if run.state in TERMINAL:
                break
            if time.monotonic() - started > self.dag_timeout:
                running = {t: s for t, s in run.tasks.items() if s not in TASK_DONE}
                raise RehearsalError(f"{run.dag_id}: run {run.run_id} did not finish within "
                                     f"{self.dag_timeout:.0f} s; unfinished tasks: {running}")
            time.sleep(self.poll)
        run.seconds = time.monotonic() - started
        missing = set(step.approvals) - answered
        failed = [t for t, s in run.tasks.items() if s in ("failed", "upstream_failed")]
        if step.expect_failure_at:
            first = [t for t, s in run.tasks.items() if s == "failed"]
            if run.state != "failed" or first != [step.expect_failure_at]:
                raise RehearsalError(f"{run.dag_id}: expected a refusal at {step.expect_failure_at}, got run state "
                                     f"{run.state}, failed tasks {first}")
            reason = self.failure_reason(run, step.expect_failure_at)
            say(f"  refused as the runbook says, at {step.expect_failure_at} ({run.seconds:.0f} s):")
            say(reason, indent=4)
            return run
        if run.state != "success":
            task = failed[0] if failed else "?"
            raise RehearsalError(f"{run.dag_id}/{task} failed (run {run.run_id}): {self.failure_reason(run, task)}"
                                 + (f"\n{step.hint}" if step.hint else ""))
        if missing:
            raise RehearsalError(f"{run.dag_id}: the approvals {sorted(missing)} were never requested; "
                                 f"task states: {run.tasks}")
        say(f"  {run.dag_id}: success in {run.seconds:.0f} s")
        if step.report:
            step.report(self.api, run)
        return run

    def _refresh(self, run: Run) -> None:
        run.state = self.api.run_state(run.dag_id, run.run_id)
        for ti in self.api.task_instances(run.dag_id, run.run_id):
            key = ti["task_id"] if ti.get("map_index", -1) < 0 else f"{ti['task_id']}[{ti['map_index']}]"
            state = ti.get("state") or "none"
            if run.tasks.get(key) != state:
                run.tasks[key] = state
                if state in TASK_DONE or state in ("deferred", "awaiting_input"):
                    say(f"  {key}: {state}", indent=2)

    def failure_reason(self, run: Run, task_id: str) -> str:
        """The exception line(s) of the task's last try, from its log (REST)."""
        tis = [t for t in self.api.task_instances(run.dag_id, run.run_id) if t["task_id"] == task_id]
        if not tis:
            return "(no such task instance)"
        ti = tis[0]
        try:
            content = self.api.task_log(run.dag_id, run.run_id, task_id, max(1, ti.get("try_number") or 1),
                                        ti.get("map_index", -1))
        except RehearsalError as exc:
            return f"(log not readable: {exc})"
        lines = []
        for item in content:
            if isinstance(item, dict):
                for err in item.get("error_detail") or []:
                    lines.append(f"{err.get('exc_type')}: {err.get('exc_value')}")
                if item.get("level") in ("error", "critical") and not item.get("error_detail"):
                    lines.append(str(item.get("event")))
            elif "Error" in str(item) or "Exception" in str(item):
                lines.append(str(item))
        if not lines:  # not the task's own error: the scheduler changed its state (event log says why)
            for event in self.api.event_logs(run.dag_id, run.run_id, task_id):
                if event.get("extra") and "mismatch" in str(event.get("event")):
                    lines.append(f"{event.get('event')}: {_short(event.get('extra') or '', 600)}")
        return "\n".join(dict.fromkeys(lines)) or "(no error in the task log or the event log)"

    # waiting between phases, as the runbook says -------------------------------------------------
    def wait_for_cleanup_age(self) -> None:
        min_age = self.cfg.cleanup.min_age_after_write_cutover
        if self.write_cutover_at is None:
            raise RehearsalError("no write cutover time from phase 5 (write_cutover XCom)")
        self._sleep_until(self.write_cutover_at + min_age, f"cleanup.min_age_after_write_cutover "
                          f"({min_age.total_seconds():g} s) after the write cutover")

    def wait_for_safe_drop(self) -> None:
        if self.safe_drop_at is None:
            raise RehearsalError("no safe-drop date from the archive run (archive_tables XCom)")
        self._sleep_until(self.safe_drop_at, "the safe-drop date (archive + cleanup.archive_retention)")

    def _sleep_until(self, moment: datetime, what: str) -> None:
        wait = (moment - datetime.now(UTC)).total_seconds() + 1
        if wait > 0:
            say("")
            say(f"waiting {wait:.0f} s for {what}: {moment.isoformat(timespec='seconds')}")
            time.sleep(wait)

    # what each DAG reports ----------------------------------------------------------------------
    def _report_setup(self, api: Airflow, run: Run) -> None:
        say(f"    servers: {_short(api.xcom(run.dag_id, run.run_id, 'check_connections'))}")
        say(f"    tables checked: {len(api.xcom(run.dag_id, run.run_id, 'check_tables') or [])}")
        schema = api.xcom(run.dag_id, run.run_id, "create_control_schema") or {}
        flags = schema.get("flags") or {}
        say(f"    control schema version {schema.get('version')}, applied now: {schema.get('applied')}")
        say(f"    flags: {_short(flags, 300)}")
        moved = {k: v for k, v in flags.items() if v not in (False, 0)}
        if moved:
            raise RehearsalError(f"this demo has been migrated before (flags {moved}).\n{FRESH_DEMO}")

    def _report_backup(self, api: Airflow, run: Run) -> None:
        m = api.xcom(run.dag_id, run.run_id, "record_manifest") or {}
        say(f"    {m.get('file')} ({m.get('size_bytes')} bytes), WAL LSN {m.get('wal_lsn')}, "
            f"{len(m.get('tables') or {})} tables, {m.get('total_rows')} rows")
        say(f"    test restore: {_short(m.get('restore_check'), 200)}")

    def _report_phase1(self, api: Airflow, run: Run) -> None:
        for task in ("step_1_1_add_columns", "step_1_2_indexes", "step_1_3_defaults_constraints"):
            result = api.xcom(run.dag_id, run.run_id, task) or {}
            notes = [n for s in result.get("steps", []) for n in s.get("notes", [])]
            say(f"    {task}: {_short(notes or result)}")

    def _report_phase2(self, api: Airflow, run: Run) -> None:
        s = api.xcom(run.dag_id, run.run_id, "phase2_summary") or {}
        say(f"    dual-write flag: {_short(s.get('dual_write_flag'))}")
        say(f"    gate before backfill: {_short(_pick(s.get('gate_before'), 'success_pct', 'attempts', 'window'))}")
        say(f"    backfill: {_short(s.get('backfill'), 300)}")
        say(f"    gate after backfill: {_short(_pick(s.get('gate_after'), 'success_pct', 'attempts', 'window'))}")

    def _report_consistency(self, api: Airflow, run: Run) -> None:
        v = api.xcom(run.dag_id, run.run_id, "verdict") or {}
        say(f"    consistency run {v.get('run_pk')}: {v.get('status')}")
        for check in v.get("checks") or []:
            say(f"    {check.get('kind')}:{check.get('name')}: {check.get('status')} "
                f"{_short(_pick(check, 'old_count', 'new_count', 'counts'), 200)}")

    def _report_phase4(self, api: Airflow, run: Run) -> None:
        say(f"    shadow reads: {_short(api.xcom(run.dag_id, run.run_id, 'enable_shadow_reads'))}")
        gate = api.xcom(run.dag_id, run.run_id, "shadow_reads_gate") or {}
        say(f"    shadow-read gate: {gate.get('status')} - {_short(gate.get('reason'), 200)}")
        self._report_consistency(api, run)

    def _report_phase5(self, api: Airflow, run: Run) -> None:
        for task in ("check_dual_write", "check_consistency", "check_shadow_reads", "check_backup"):
            gate = api.xcom(run.dag_id, run.run_id, task) or {}
            say(f"    {task}: {gate.get('status')} - {_short(gate.get('reason'), 220)}")
        say(f"    baseline: {_short(api.xcom(run.dag_id, run.run_id, 'measure_baseline'))}")
        for step in self.cfg.cutover.rollout:
            event = api.xcom(run.dag_id, run.run_id, f"read_rollout_{step.pct}pct") or {}
            say(f"    read_new_pct={step.pct}: {event.get('status')} after {event.get('checks')} checks - "
                f"{_short(event.get('reason'), 200)}")
        cut = api.xcom(run.dag_id, run.run_id, "write_cutover") or {}
        say(f"    write cutover: {_short(cut)}")
        say(f"    keep_old_sync: {_short(api.xcom(run.dag_id, run.run_id, 'end_keep_old_sync'))}")
        if cut.get("write_cutover_at"):
            self.write_cutover_at = datetime.fromisoformat(cut["write_cutover_at"])

    def _report_archive(self, api: Airflow, run: Run) -> None:
        age = api.xcom(run.dag_id, run.run_id, "check_write_cutover_age") or {}
        say(f"    write-cutover age: {age.get('status')} - {_short(age.get('reason'))}")
        say(f"    stop_old_writes: {_short(api.xcom(run.dag_id, run.run_id, 'stop_old_writes'), 300)}")
        result = api.xcom(run.dag_id, run.run_id, "archive_tables") or {}
        for entry in (s.get("details") or {} for s in result.get("steps") or []):
            say(f"    {entry.get('table')} -> {entry.get('archived')}, safe to drop after {entry.get('safe_drop_at')}")
            if entry.get("safe_drop_at"):
                at = datetime.fromisoformat(entry["safe_drop_at"])
                self.safe_drop_at = max(self.safe_drop_at or at, at)

    def _report_drop(self, api: Airflow, run: Run) -> None:
        say(f"    {_short(api.xcom(run.dag_id, run.run_id, 'drop_archived'), 400)}")


# --- CLI -----------------------------------------------------------------------------------
def _demo_dir() -> Path:
    return Path(os.environ.get("DEMO_DIR") or PROJECT_ROOT / ".demo")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    demo = _demo_dir()
    ap = argparse.ArgumentParser(
        prog="python -m devtools.rehearsal",
        description="Run the whole migration on a running demo, as docs/runbook.md says (Airflow REST API).")
    ap.add_argument("--demo-dir", type=Path, default=demo, help=f"the demo's state directory (default {demo})")
    ap.add_argument("--airflow-url", default=None,
                    help="default http://127.0.0.1:$DEMO_AIRFLOW_PORT (8080)")
    ap.add_argument("--user", default=None, help="default: the first user in <demo-dir>/airflow/"
                                                  "simple_auth_manager_passwords.json.generated")
    ap.add_argument("--password", default=None, help="default: that user's generated password")
    ap.add_argument("--config", type=Path, default=None,
                    help=f"the config Airflow runs with (default ${CONFIG_ENV}, else {REHEARSAL_CONFIG})")
    ap.add_argument("--backup-dir", type=Path, default=None,
                    help="pre-flight backup target (default <demo-dir>/backups)")
    ap.add_argument("--drop", choices=["refuse", "wait", "both", "skip"], default="both",
                    help="phase 6 drop: show it refused before the safe-drop date (refuse), wait for the date and "
                         "drop (wait), both (default), or neither (skip)")
    ap.add_argument("--dag-timeout", type=float, default=600.0, help="seconds one DAG run may take")
    ap.add_argument("--poll", type=float, default=2.0, help="seconds between status polls")
    ap.add_argument("--answer-delay", type=float, default=5.0,
                    help="seconds to wait before answering an approval (Airflow 3.3.2 race, docs/runbook.md)")
    return ap.parse_args(argv)


def _credentials(args: argparse.Namespace) -> tuple[str, str]:
    if args.user and args.password:
        return args.user, args.password
    pw_file = args.demo_dir / "airflow" / "simple_auth_manager_passwords.json.generated"
    try:
        creds = json.loads(pw_file.read_text())
    except (OSError, ValueError) as exc:
        raise RehearsalError(f"no --user/--password given and {pw_file} is not readable ({exc}); "
                             "is the demo up (make demo)?") from None
    user = args.user or next(iter(creds))
    if user not in creds:
        raise RehearsalError(f"user {user!r} is not in {pw_file} (users: {sorted(creds)})")
    return user, args.password or creds[user]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg_path = args.config or Path(os.environ.get(CONFIG_ENV) or REHEARSAL_CONFIG)
        cfg = load_config(cfg_path)
        url = args.airflow_url or f"http://127.0.0.1:{int(os.environ.get('DEMO_AIRFLOW_PORT', '8080'))}"
        user, password = _credentials(args)
        backup_dir = (args.backup_dir or args.demo_dir / "backups").resolve()
        backup_dir.mkdir(parents=True, exist_ok=True)
        rehearsal = Rehearsal(Airflow(url, user, password), cfg, backup_dir=backup_dir, cfg_source=str(cfg_path),
                              poll=args.poll, dag_timeout=args.dag_timeout, drop=args.drop,
                              answer_delay=args.answer_delay)
        runs = rehearsal.run()
    except RehearsalError as exc:
        say("")
        say(f"REHEARSAL FAILED: {exc}")
        return 1
    except Exception as exc:  # noqa: BLE001 - a config error or a bug: say so, exit non-zero
        say("")
        say(f"REHEARSAL FAILED: {type(exc).__name__}: {exc}")
        return 1
    say("")
    say(f"REHEARSAL PASSED: {len(runs)} DAG runs in {time.monotonic() - _T0:.0f} s")
    for r in runs:
        extra = f"  approvals: {', '.join(r.approvals)}" if r.approvals else ""
        say(f"  {r.dag_id:34s} {r.state:8s} {r.seconds:5.0f} s{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
