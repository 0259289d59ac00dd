"""Backfill knobs: the config's ``backfill`` section, overridable per run (DAG Params, CLI flags)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from migration_engine.config import MigrationConfig, PauseWhen
from migration_engine.errors import MigrationError


class BackfillError(MigrationError):
    """The backfill cannot proceed; the message says what to fix."""


@dataclass(frozen=True)
class Settings:
    batch_size: int = 5000
    min_batch_size: int = 500
    max_batch_size: int = 50_000
    target_batch_seconds: float = 1.0
    max_rows_per_second: int = 0  # whole backfill (all ranges together); 0 = no cap
    parallelism: int = 2
    pause_check_seconds: float = 5.0
    max_active_connections: int = 150
    max_lock_waits: int = 10
    max_replication_lag_seconds: float = 30.0
    max_app_p95_latency_ms: float = 500.0
    app_latency_window_seconds: float = 300.0
    version_column: str | None = "updated_at"
    lock_timeout_ms: int = 2000
    statement_timeout_ms: int = 300_000
    max_batch_retries: int = 5
    recheck_deleted: bool = True
    progress_seconds: float = 10.0
    ledger_progress_seconds: float = 60.0

    @classmethod
    def from_config(cls, config: MigrationConfig, **overrides: Any) -> Settings:
        b = config.backfill
        p: PauseWhen = b.pause_when
        base = cls(
            batch_size=b.batch_size, min_batch_size=b.min_batch_size, max_batch_size=b.max_batch_size,
            target_batch_seconds=b.target_batch_duration.total_seconds(),
            max_rows_per_second=b.max_rows_per_second, parallelism=b.parallelism,
            pause_check_seconds=b.pause_check_interval.total_seconds(),
            max_active_connections=p.max_active_connections, max_lock_waits=p.max_lock_waits,
            max_replication_lag_seconds=p.max_replication_lag.total_seconds(),
            max_app_p95_latency_ms=p.max_app_p95_latency_ms,
            app_latency_window_seconds=b.app_latency_window.total_seconds(),
            version_column=b.version_column,
            lock_timeout_ms=int(b.lock_timeout.total_seconds() * 1000),
            statement_timeout_ms=int(b.statement_timeout.total_seconds() * 1000),
            max_batch_retries=b.max_batch_retries, recheck_deleted=b.recheck_deleted,
            progress_seconds=b.progress_interval.total_seconds(),
        )
        return base.with_overrides(**overrides)

    def with_overrides(self, **overrides: Any) -> Settings:
        """Apply non-None overrides, validated (Params and CLI flags arrive here)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise BackfillError(f"unknown backfill setting(s) {unknown}; known: {sorted(known)}")
        given = {k: v for k, v in overrides.items() if v is not None}
        s = replace(self, **given)
        # An explicit batch size outside the adaptive bounds widens them (the operator asked for it).
        if "batch_size" in given and "min_batch_size" not in given and s.batch_size < s.min_batch_size:
            s = replace(s, min_batch_size=s.batch_size)
        if "batch_size" in given and "max_batch_size" not in given and s.batch_size > s.max_batch_size:
            s = replace(s, max_batch_size=s.batch_size)
        s.validate()
        return s

    def validate(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise BackfillError(f"invalid backfill setting: {what}")

        need(self.min_batch_size >= 1, f"min_batch_size must be >= 1, got {self.min_batch_size}")
        need(self.min_batch_size <= self.max_batch_size,
             f"min_batch_size {self.min_batch_size} > max_batch_size {self.max_batch_size}")
        need(self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}")
        need(self.max_rows_per_second >= 0, f"max_rows_per_second must be >= 0, got {self.max_rows_per_second}")
        need(1 <= self.parallelism <= 64, f"parallelism must be 1-64, got {self.parallelism}")
        need(self.target_batch_seconds > 0, "target_batch_seconds must be > 0")
        need(self.pause_check_seconds > 0, "pause_check_seconds must be > 0")

    def initial_batch_size(self) -> int:
        """The requested batch size, clamped into [min, max] (a Param may ask for anything)."""
        return max(self.min_batch_size, min(self.max_batch_size, self.batch_size))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
