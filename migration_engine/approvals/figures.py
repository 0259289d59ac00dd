"""The figures an approval request shows: the numbers behind the decision (no Airflow).

Three sources, in this order: figures passed to the approval, the results of upstream tasks (a
``GateResult.as_dict()`` - its figures plus a note with its status and reason - or any dict or
value) and the latest ``gate_results`` rows of named (machine) gates. A figure name seen twice is
prefixed with its source, so nothing is silently overwritten. A source that cannot be read becomes
a note ("... unavailable"), never an error: the request must still go out.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any


def collect(cfg, *, figures: Mapping[str, Any] | None = None, figures_from: Sequence[str] = (),
            pull: Callable[[str], Any] | None = None,
            gate_results: Sequence[str] = ()) -> tuple[dict[str, Any], list[str]]:
    """(figures, notes). ``pull(task_id)`` returns an upstream task's result (its XCom)."""
    out: dict[str, Any] = {}
    notes: list[str] = []

    def add(source: str, values: Mapping[str, Any]) -> None:
        for key, value in values.items():
            out[str(key) if key not in out else f"{source}.{key}"] = value

    def add_result(source: str, value: Any) -> None:
        if isinstance(value, Mapping) and isinstance(value.get("figures"), Mapping):
            status = value.get("status")
            if status:
                notes.append(f"{value.get('gate') or source}: {status}" +
                             (f" - {value['reason']}" if value.get("reason") else ""))
            add(source, value["figures"])
        elif isinstance(value, Mapping):
            add(source, value)
        elif value is not None:
            out[source] = value

    add("figures", dict(figures or {}))
    for task_id in figures_from:
        try:
            if pull is None:
                raise LookupError("no task results here")
            add_result(task_id, pull(task_id))
        except Exception as exc:  # noqa: BLE001
            notes.append(f"figures from {task_id} unavailable ({type(exc).__name__})")
    if gate_results:
        try:
            from migration_engine import db
            from migration_engine.approvals import store

            with db.connection(cfg.connections.legacy, application_name="migration-approvals") as conn:
                latest = store.latest_gate_results(conn, cfg.control_schema, list(gate_results))
            for name in gate_results:
                if name in latest:
                    add_result(name, {"gate": name, **latest[name]})
                else:
                    notes.append(f"{name}: never evaluated")
        except Exception as exc:  # noqa: BLE001
            notes.append(f"gate results unavailable ({type(exc).__name__})")
    return out, notes
