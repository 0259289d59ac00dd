"""GateSensor: wait - without holding a worker slot - until a gate passes.

    from migration_engine.airflow.sensors import GateSensor

    GateSensor(
        task_id="dual_write_99_for_48h",
        gate="dual_write_health",                       # registered name, or "module:function"
        gate_params={"min_success_pct": 99, "window": "48h"},
        poke_interval=60,                               # seconds or timedelta
        timeout=timedelta(days=3),                      # then fail with the last figures
        fail_on=("critical",),                          # statuses that fail the task at once
    )

``execute`` resolves the gate (an unknown gate or bad params fail right away, in the worker) and
defers to :class:`~migration_engine.airflow.triggers.GateTrigger` (the shared polling loop over a
``GateWatch``); the task instance is then ``deferred`` and the triggerer evaluates the gate every
``poke_interval``. ``execute_complete``
returns the passing evaluation (status, reason, figures - pushed as XCom) or raises with the
reason: ``AirflowSensorTimeout`` on timeout, ``AirflowFailException`` on a ``fail_on`` status (no
retry: a critical gate needs a human), ``AirflowException`` when the gate could not be evaluated.

The gate's params are called ``gate_params`` (templated) because ``params`` is Airflow's own
operator argument (DAG Params), and the gate's name in ``gate_results`` is ``gate_label`` (default:
the gate name) because ``label`` is taken too. ``dry_run`` (templated, e.g. ``"{{ params.dry_run }}"``) evaluates
once, records the result and returns without waiting or alerting. ``gate_timeout`` (templated,
seconds or "48h") overrides ``timeout`` per run, e.g. from a DAG Param.

Resilient: ``retries`` defaults to ``WAIT_RETRIES`` (at least 1, see ``migration_engine.airflow.waits``);
a retried try keeps the first try's deadline (read back from the ledger's ``wait.started``), and
the gate's alert state is read back from ``gate_results`` (no second page for a status already
reported). A triggerer restart re-creates the trigger from its kwargs: same deadline, same state.

``page_on_failure=False``: the failure and retry callbacks stay quiet for this task because another
task pages for it (the phase-5 checklist's ``checklist_result``: one page per run, not one per gate).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSensorTimeout

from migration_engine.airflow.triggers import GateTrigger
from migration_engine.airflow.waits import resume, wait_retries
from migration_engine.gates.runner import GateMonitor, resolve

STATUSES = ("passed", "waiting", "warning", "critical", "failed")
_TRUE = {"true", "1", "yes", "on"}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in _TRUE
    return bool(value)


class GateSensor(BaseSensorOperator):
    template_fields = ("gate_params", "gate_label", "dry_run", "gate_timeout")
    template_fields_renderers = {"gate_params": "json"}
    ui_color = "#d9ecd0"

    def __init__(
        self,
        *,
        gate: str,
        gate_params: dict[str, Any] | None = None,
        gate_label: str | None = None,
        poke_interval: timedelta | float = 60,
        timeout: timedelta | float | None = None,
        fail_on: Iterable[str] = ("critical",),
        alert: bool = True,
        dry_run: bool | str = False,
        gate_timeout: float | str | None = None,
        max_consecutive_errors: int = 5,
        page_on_failure: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **wait_retries(kwargs.get("task_id"), kwargs))
        fail_on = tuple(fail_on)
        bad = [s for s in fail_on if s not in STATUSES or s == "passed"]
        if bad:
            raise ValueError(f"GateSensor {kwargs.get('task_id')}: fail_on {bad} must be among "
                             f"{[s for s in STATUSES if s != 'passed']}")
        if self.poke_interval <= 0:
            raise ValueError("GateSensor poke_interval must be positive")
        self.gate = gate
        self.gate_params = dict(gate_params or {})
        self.gate_label = gate_label
        self.fail_on = fail_on
        self.alert = alert
        self.dry_run = dry_run
        self.gate_timeout = gate_timeout
        self.max_consecutive_errors = max_consecutive_errors
        # False: the task's failure/retry callbacks do not page (a summary task pages for it).
        self.page_on_failure = page_on_failure

    def execute(self, context) -> Any:
        ti = context["ti"]
        try:
            resolve(self.gate)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from exc
        if _truthy(self.dry_run):
            return self._evaluate_once(ti)
        wait = self._wait_seconds()
        deadline = self._deadline(ti, datetime.now(UTC) + timedelta(seconds=wait))
        wait = max((deadline - datetime.now(UTC)).total_seconds(), 0.0) + self.poke_interval
        self.log.info("gate %s: deferring (poke every %ss, deadline %s, fail on %s, params %s)",
                      self.gate_label or self.gate, self.poke_interval, deadline.isoformat(timespec="seconds"),
                      list(self.fail_on), self.gate_params)
        self.defer(
            trigger=GateTrigger(
                self.gate, self.gate_params, label=self.gate_label, poke_interval=self.poke_interval,
                deadline=deadline.isoformat(), fail_on=list(self.fail_on), dag_id=ti.dag_id,
                run_id=ti.run_id, task_id=ti.task_id, alert=self.alert,
                max_consecutive_errors=self.max_consecutive_errors),
            method_name="execute_complete",
            timeout=timedelta(seconds=wait),
        )

    def _deadline(self, ti, fresh: datetime) -> datetime:
        """This try's deadline: ``fresh``, or the first try's when this is a retry of the same wait."""
        from migration_engine import db
        from migration_engine.airflow.dags import config

        cfg = config()
        with db.connection(cfg.connections.legacy) as conn:
            started = resume(conn, cfg.control_schema, self, ti, kind="gate", actor=f"airflow:{ti.dag_id}",
                             fresh={"gate": self.gate_label or self.gate, "deadline": fresh.isoformat(),
                                    "dag_id": ti.dag_id, "run_id": ti.run_id, "task_id": ti.task_id},
                             reason=f"gate {self.gate_label or self.gate}: waiting until it passes")
        return datetime.fromisoformat(started.details["deadline"])

    def _wait_seconds(self) -> float:
        """``gate_timeout`` (templated: seconds or a duration like "48h") if given, else ``timeout``."""
        if self.gate_timeout in (None, "", "None"):
            return float(self.timeout)
        from migration_engine.config import parse_duration

        try:
            seconds = parse_duration(self.gate_timeout if not isinstance(self.gate_timeout, str)
                                     else (float(self.gate_timeout) if _is_number(self.gate_timeout)
                                           else self.gate_timeout)).total_seconds()
        except ValueError as exc:
            raise AirflowFailException(f"gate_timeout {self.gate_timeout!r}: {exc}") from exc
        if seconds <= 0:
            raise AirflowFailException(f"gate_timeout must be positive, got {self.gate_timeout!r}")
        return seconds

    def _evaluate_once(self, ti) -> dict[str, Any]:
        monitor = GateMonitor(self.gate, self.gate_params, label=self.gate_label, dag_id=ti.dag_id,
                              run_id=ti.run_id, task_id=ti.task_id, alert=False)
        ev = monitor.evaluate()
        if ev.permanent:
            raise AirflowFailException(ev.error)
        self.log.info("dry run: gate %s is %s - %s (not waiting)", monitor.label, ev.result.status,
                      ev.result.reason)
        return {**ev.payload(), "dry_run": True}

    def execute_complete(self, context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not isinstance(event, dict) or "status" not in event:
            raise AirflowException(f"gate {self.gate_label or self.gate}: malformed trigger event {event!r}")
        status, reason = event["status"], event.get("reason", "")
        label = event.get("label") or self.gate_label or self.gate
        figures = event.get("figures") or {}
        if status == "passed":
            self.log.info("gate %s passed after %s evaluation(s): %s", label, event.get("evaluations"), reason)
            return event
        self.log.error("gate %s: %s - %s; figures: %s", label, status, reason, figures)
        if status == "timeout":
            raise AirflowSensorTimeout(reason)
        if status == "failed":
            raise AirflowException(f"gate {label} could not be evaluated: {reason}")
        raise AirflowFailException(f"gate {label} is {status}: {reason}")
