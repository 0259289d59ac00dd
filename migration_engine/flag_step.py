"""A feature-flag change as a step: the same plan / apply / verify / revert as a schema change.

Why: every phase flips flags (dual-write on, shadow reads, read rollout, write cutover, maintenance,
rollbacks). As a :class:`~migration_engine.steps.Step` run by ``StepRunner``, a flip gets a dry-run
plan (the exact UPDATE and its ledger entry), idempotence (a re-run that finds the value writes
nothing), run state in ``step_state`` with the value it found (``before``), and a revert that puts
exactly that value back. The change itself is ``control.set_flag``: the flag and its audit-ledger
entry in one transaction.
"""

from __future__ import annotations

import json
from typing import Any

from migration_engine import control
from migration_engine.ddl import DdlExecutor
from migration_engine.steps import Step


class SetFlag(Step):
    """``flag := value`` (audited with ``reason``); revert restores the value found before."""

    def __init__(self, schema: str, flag: str, value: Any, *, phase: str, reason: str, step_id: str | None = None):
        self.schema = schema
        self.flag = flag
        self.value = control.validate_flag(flag, value)
        self.phase = phase
        self.reason = reason
        self.step_id = step_id or f"{phase}.flag.{flag}"
        self.title = f"set {flag} = {json.dumps(self.value)}"

    def _current(self, ex: DdlExecutor) -> Any:
        return control.current_flags(ex.conn, self.schema).get(self.flag)

    def before_state(self, ex: DdlExecutor) -> dict[str, Any]:
        return {"value": self._current(ex)}

    def _set(self, ex: DdlExecutor, value: Any, reason: str) -> list[str]:
        current = self._current(ex)
        if current == value and isinstance(current, type(value)):
            return [f"{self.flag} is already {json.dumps(value)}"]
        text = ex.render("control/flag_set.sql", {"schema": self.schema},
                         {"name": self.flag, "value": json.dumps(value), "actor": ex.actor})

        def change() -> None:
            with ex.transaction():  # the executor runs in autocommit: flag + ledger entry as one
                control.set_flag(ex.conn, self.schema, self.flag, value, actor=ex.actor, reason=reason,
                                 context=ex.context)

        ex.action(f"{text};\n-- + one audit-ledger entry (set_flag {self.flag}) in the same transaction", change)
        return [f"{self.flag}: {json.dumps(current)} -> {json.dumps(value)}"]

    def apply(self, ex: DdlExecutor) -> list[str]:
        return self._set(ex, self.value, self.reason)

    def problems(self, ex: DdlExecutor) -> list[str]:
        current = self._current(ex)
        return [] if current == self.value else [f"{self.flag} is {json.dumps(current)}, not {json.dumps(self.value)}"]

    def revert(self, ex: DdlExecutor, before: dict[str, Any]) -> list[str]:
        return self._set(ex, before["value"], f"revert {self.step_id}: back to {json.dumps(before['value'])}")
