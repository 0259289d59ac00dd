"""Gates: machine-checked conditions that a phase waits on (evaluators, monitor, watch).

The Airflow side (``GateSensor``, ``GateTrigger``) is in ``migration_engine.airflow``.

An evaluator is a plain function ``(legacy_conn, cfg, now, **params) -> GateResult`` registered by
name in ``REGISTRY`` (see ``register``), so a trigger can serialise just the gate name and params,
and the same evaluators run in tests without Airflow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

GateStatus = Literal["passed", "waiting", "warning", "critical", "failed"]


@dataclass(frozen=True)
class GateResult:
    gate: str
    status: GateStatus
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Evaluator = Callable[..., GateResult]
REGISTRY: dict[str, Evaluator] = {}


def register(name: str) -> Callable[[Evaluator], Evaluator]:
    def deco(fn: Evaluator) -> Evaluator:
        REGISTRY[name] = fn
        return fn

    return deco


def get_evaluator(name: str) -> Evaluator:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown gate {name!r}; known gates: {sorted(REGISTRY)}") from None
