"""Evaluate a gate once: find its evaluator, run it, record the result, escalate status changes.

This is the synchronous core shared by the deferred wait (``gates.watch.GateWatch``, polled in a
thread every poke interval by ``migration_engine.airflow.triggers.GateTrigger``), the sensor's
dry-run mode, and tests. It never needs Airflow itself.

* :func:`resolve` finds an evaluator by registered name (importing the modules of this package
  lazily, so a triggerer process that only knows the name still finds it) or by an explicit
  ``"package.module:function"`` path.
* :class:`GateMonitor` keeps the last status so Slack is paged only when the status *changes*
  (waiting -> warning, warning -> critical, ...) and the open alert is resolved when the gate
  recovers; every evaluation - including failed ones - lands in ``gate_results``. A passing
  evaluation also resolves any other open alert that reported this gate as a condition once all
  of its conditions pass (``alerts.resolve_cleared``: e.g. the phase-5 checklist page of an
  earlier run), so an alert closes when what it reported clears, not when a task succeeds.

Logging: the evaluation is logged once, by the caller (``gates.watch`` summarises repeats).
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg2

from migration_engine import control, sqlfiles
from migration_engine.config import ConfigError, MigrationConfig, load_config
from migration_engine.errors import MigrationError
from migration_engine.gates import REGISTRY, Evaluator, GateResult, get_evaluator

log = logging.getLogger(__name__)

ALERTING = ("warning", "critical")
# Modules of this package that hold no evaluators.
_NOT_EVALUATORS = {"runner", "watch", "window"}


class GateConfigError(MigrationError, ValueError):
    """The gate is unknown or its params are invalid: waiting longer will not fix it."""


def _import_gate_modules() -> dict[str, str]:
    """Import every evaluator module of this package (they register on import).

    One broken module must not hide the others' gates: failures are returned (and named in the
    "unknown gate" error), not raised.
    """
    import migration_engine.gates as pkg

    failed: dict[str, str] = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name in _NOT_EVALUATORS:
            continue
        try:
            importlib.import_module(f"{pkg.__name__}.{info.name}")
        except Exception as exc:  # noqa: BLE001 - reported with the lookup failure
            log.warning("gate module %s.%s cannot be imported: %s", pkg.__name__, info.name, exc)
            failed[info.name] = f"{type(exc).__name__}: {exc}"
    return failed


def resolve(gate: str) -> tuple[Evaluator, str]:
    """``(evaluator, "module:function")`` for a registered gate name or a ``module:function`` path."""
    if not isinstance(gate, str) or not gate.strip():
        raise GateConfigError(f"gate must be a gate name or 'module:function', got {gate!r}")
    if ":" in gate:
        module_name, _, attr = gate.partition(":")
        try:
            evaluator = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise GateConfigError(f"gate {gate!r} cannot be imported: {exc}") from exc
        if not callable(evaluator):
            raise GateConfigError(f"gate {gate!r} is not callable")
        return evaluator, gate
    failed = _import_gate_modules() if gate not in REGISTRY else {}
    try:
        evaluator = get_evaluator(gate)
    except KeyError as exc:
        broken = f" (modules that failed to import: {failed})" if failed else ""
        raise GateConfigError(exc.args[0] + broken) from None
    return evaluator, f"{evaluator.__module__}:{evaluator.__name__}"


def default_connect(cfg: MigrationConfig):
    from migration_engine import db

    return db.connect(cfg.connections.legacy, application_name="migration-gate")


@dataclass(frozen=True)
class Evaluation:
    result: GateResult
    gate_result_id: int | None  # None when it could not be recorded
    changed: bool  # status differs from the previous evaluation
    alert: str | None  # "warning" / "critical" paged, "resolved", or None
    error: str | None = None  # the evaluation itself failed
    permanent: bool = False  # ... in a way that waiting will not fix (bad gate or params)

    def payload(self) -> dict[str, Any]:
        return {"status": self.result.status, "reason": self.result.reason, "figures": self.result.figures,
                "gate": self.result.gate, "gate_result_id": self.gate_result_id}


class GateMonitor:
    """One gate, evaluated repeatedly for one task; remembers the last status between calls."""

    def __init__(
        self,
        gate: str,
        params: dict[str, Any] | None = None,
        *,
        label: str | None = None,
        dag_id: str | None = None,
        run_id: str | None = None,
        task_id: str | None = None,
        alert: bool = True,
        cfg_loader: Callable[[], MigrationConfig] = load_config,
        connect: Callable[[MigrationConfig], Any] = default_connect,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.gate = gate
        self.params = dict(params or {})
        self.evaluator, self.evaluator_path = resolve(gate)
        self.label = label or (gate.partition(":")[2] if ":" in gate else gate)
        self.dag_id, self.run_id, self.task_id = dag_id, run_id, task_id
        self.alert_enabled = alert
        self._cfg_loader = cfg_loader
        self._connect = connect
        self._clock = clock
        self.last_status: str | None = None
        self._loaded_last = False
        self.consecutive_errors = 0
        self.evaluations = 0

    @property
    def dedup_key(self) -> str:
        return f"gate:{self.label}:{self.dag_id}:{self.run_id}:{self.task_id}"

    def _load_last_status(self, conn, schema: str) -> None:
        """After a triggerer restart, continue from the status already reported (no second page)."""
        if self._loaded_last:
            return
        with conn.cursor() as cur:
            sqlfiles.run(cur, "gates/last_status.sql", {"schema": schema},
                         {"gate": self.label, "dag_id": self.dag_id, "run_id": self.run_id,
                          "task_id": self.task_id})
            row = cur.fetchone()
        conn.commit()
        self.last_status = row[0] if row else None
        self._loaded_last = True

    def evaluate(self) -> Evaluation:
        """Evaluate, record, alert on change. Never raises for evaluation problems (see ``error``)."""
        self.evaluations += 1
        try:
            cfg = self._cfg_loader()
        except ConfigError as exc:
            return self._failed(None, None, f"migration config is invalid: {exc}", permanent=True)
        try:
            conn = self._connect(cfg)
        except Exception as exc:  # noqa: BLE001 - an unreachable database is retried by the caller
            return self._failed(cfg, None, f"cannot connect to the control database: {exc}")
        try:
            return self._evaluate(cfg, conn)
        finally:
            try:
                conn.close()
            except Exception:  # noqa: BLE001
                pass

    def _evaluate(self, cfg: MigrationConfig, conn) -> Evaluation:
        schema = cfg.control_schema
        now = self._clock()
        try:
            self._load_last_status(conn, schema)
            result = self.evaluator(conn, cfg, now, **self.params)
            conn.commit()  # evaluators only read; end their transaction
        except (ValueError, TypeError, KeyError) as exc:
            conn.rollback()
            return self._failed(cfg, conn, f"gate {self.label} cannot be evaluated: {exc}", permanent=True)
        except psycopg2.Error as exc:
            conn.rollback()
            missing = getattr(exc, "pgcode", None) in ("42P01", "3F000", "42703")  # table/schema/column
            hint = " (run the migration_setup DAG to create the control schema)" if missing else ""
            return self._failed(cfg, conn, f"gate {self.label}: database error: {str(exc).strip()}{hint}",
                                permanent=missing)
        if not isinstance(result, GateResult):
            return self._failed(cfg, conn, f"gate {self.label} returned {type(result).__name__}, not GateResult",
                                permanent=True)
        self.consecutive_errors = 0
        return self._finish(cfg, conn, result)

    def _failed(self, cfg: MigrationConfig | None, conn, reason: str, *, permanent: bool = False) -> Evaluation:
        self.consecutive_errors += 1
        log.warning("gate %s: evaluation failed (%d in a row): %s", self.label, self.consecutive_errors, reason)
        result = GateResult(self.label, "failed", reason, {"consecutive_errors": self.consecutive_errors})
        gate_id = self._record(cfg, conn, result) if cfg is not None and conn is not None else None
        changed = result.status != self.last_status
        self.last_status = "failed"
        return Evaluation(result, gate_id, changed, None, error=reason, permanent=permanent)

    def _record(self, cfg: MigrationConfig, conn, result: GateResult) -> int | None:
        figures = dict(result.figures)
        figures.setdefault("task_id", self.task_id)
        figures.setdefault("evaluator", self.evaluator_path)
        try:
            return control.record_gate_result(
                conn, cfg.control_schema, gate=self.label, status=result.status, figures=figures,
                reason=result.reason, dag_id=self.dag_id, run_id=self.run_id)
        except Exception as exc:  # noqa: BLE001 - the decision stands even if the ledger write fails
            log.error("gate %s: could not record the result in %s.gate_results: %s",
                      self.label, cfg.control_schema, exc)
            return None

    def _finish(self, cfg: MigrationConfig, conn, result: GateResult) -> Evaluation:
        gate_id = self._record(cfg, conn, result)
        previous, status = self.last_status, result.status
        changed = status != previous
        self.last_status = status
        alert = None
        if changed and self.alert_enabled:
            if status in ALERTING:
                alert = status if self._page(cfg, conn, result, previous) else None
            elif previous in ALERTING and status in ("passed", "waiting"):
                alert = "resolved" if self._resolve(cfg, conn, result) else None
        if status == "passed" and changed and gate_id is not None:
            self._resolve_cleared(cfg, conn, result)
        return Evaluation(result, gate_id, changed, alert)

    def _resolve_cleared(self, cfg: MigrationConfig, conn, result: GateResult) -> None:
        from migration_engine.alerts import resolve_cleared

        resolve_cleared(self.label, conn=conn, schema=cfg.control_schema, cfg=cfg,
                        text=f"cleared: {self.label} passed in {self.dag_id} run {self.run_id}: {result.reason}")

    def _page(self, cfg: MigrationConfig, conn, result: GateResult, previous: str | None) -> bool:
        from migration_engine.alerts import send_alert

        was = f" (was {previous})" if previous else ""
        res = send_alert(
            result.status, f"Gate {self.label} is {result.status}{was}", result.reason,
            figures=result.figures, dag_id=self.dag_id, task_id=self.task_id, run_id=self.run_id, cfg=cfg,
            dedup_key=self.dedup_key, conn=conn, schema=cfg.control_schema)
        return bool(res)

    def _resolve(self, cfg: MigrationConfig, conn, result: GateResult) -> bool:
        from migration_engine.alerts import resolve_alert

        res = resolve_alert(self.dedup_key, f"now {result.status}: {result.reason}", conn=conn,
                            schema=cfg.control_schema, cfg=cfg)
        return bool(res)
