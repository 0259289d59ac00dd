"""The config shape of ``pacing`` (issue 16): which batched work outside the backfill is paced, and how.

Why its own module: ``config.py`` only adds the one ``pacing`` field to ``MigrationConfig``; the
shapes live here so ``config`` can import them without an import cycle (this module imports no
other part of the package). The budget itself (``backfill.throttle.budget``), the health thresholds
(``backfill.pause_when``, ``backfill.throttle.signals``) and the check/log/ledger intervals are the
backfill's: one statement of the application's budget for every kind of batched work, read by
:mod:`migration_engine.pacing`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, use_attribute_docstrings=True)


class PacedWork(_Strict):
    controller: bool | None = Field(None, description=(
        "Pace the batches with the latency-budget controller (backfill.throttle.budget: a probe on the tables "
        "touched, a baseline before the first batch, the rate adapted to the budget); null = the same as "
        "backfill.throttle.budget.enabled."))
    health_pause: bool = Field(True, description=(
        "Pause between batches while a health signal crosses its threshold (backfill.pause_when and "
        "backfill.throttle.signals: active connections, lock waits, replication lag, vacuum on the table, "
        "application p95), checked every backfill.pause_check_interval."))
    max_rows_per_second: int = Field(0, ge=0, description=(
        "Fixed cap on the rows per second of these batches (also the controller's ceiling); 0 = no cap."))


class Pacing(_Strict):
    phase1: PacedWork = Field(PacedWork(), description=(
        "Phase 1's batched UPDATEs that fill schema_changes.required columns (ddl.update_batch_size rows "
        "per batch, on the legacy table)."))
    repair: PacedWork = Field(PacedWork(), description=(
        "The phase-3 repair's batches (500 keys per transaction: read on the legacy table, written on the new)."))
