"""A backfill run's knobs: the config's ``backfill`` section, with this run's overrides applied.

Why no settings class of its own: the config model (:class:`migration_engine.config.Backfill`) is the
one declaration of every knob, its default and its bounds. A run (DAG Params, CLI flags) may
override some of them; the overrides are merged into the section and the result is validated by
the same model, so a bad override gets the same message as a bad config line, naming the key.
Durations stay ``timedelta``; the engine reads the model's fields directly.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from migration_engine.config import Backfill, MigrationConfig, deep_merge, format_validation_errors
from migration_engine.errors import ConfigError, MigrationError


class BackfillError(MigrationError):
    """The backfill cannot proceed; the message says what to fix."""


class BackfillSettingsError(BackfillError, ConfigError):
    """An override of the ``backfill`` section (Param, CLI flag) is unknown or invalid."""


KNOWN = tuple(sorted(Backfill.model_fields))


def backfill_settings(cfg: MigrationConfig, **overrides: Any) -> Backfill:
    """The config's ``backfill`` section with the non-None ``overrides`` applied (see :func:`with_overrides`)."""
    return with_overrides(cfg.backfill, **overrides)


def with_overrides(base: Backfill, **overrides: Any) -> Backfill:
    """``base`` with the non-None ``overrides`` merged in and re-validated by the config model.

    Names are the section's keys (``batch_size``, ``pause_check_interval`` ...); a mapping merges
    into a nested section (``pause_when={"max_lock_waits": 0}``). Durations take what the config
    takes (``"500ms"``, or seconds as a number); override values are not time-scaled. An explicit
    ``batch_size`` outside [min_batch_size, max_batch_size] widens the bound it crosses (the operator
    asked for it) unless that bound is overridden too.
    """
    unknown = sorted(set(overrides) - set(KNOWN))
    if unknown:
        raise BackfillSettingsError(f"unknown backfill setting(s) {unknown}; known: {list(KNOWN)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    if not given:
        return base
    data = deep_merge(base.model_dump(), given)
    size = given.get("batch_size")
    if isinstance(size, int) and not isinstance(size, bool):
        if "min_batch_size" not in given and size < data["min_batch_size"]:
            data["min_batch_size"] = size
        if "max_batch_size" not in given and size > data["max_batch_size"]:
            data["max_batch_size"] = size
    try:
        # No time_scale context: the section's windows are already scaled, and overrides are taken as given.
        return Backfill.model_validate(data)
    except ValidationError as exc:
        raise BackfillSettingsError(
            f"invalid backfill setting(s) (config `backfill` section with this run's overrides {given}):\n"
            + "\n".join(format_validation_errors(exc, prefix="backfill."))) from None


def budget_overrides(params: dict[str, Any]) -> dict[str, Any] | None:
    """The latency-budget Params as a ``throttle`` override: ``latency_budget_pct`` None = the config's
    controller setting, 0 = controller off (fixed cap only), > 0 = on with that budget;
    ``replica_lag_budget_seconds`` None = the config's; ``app_p95_ms`` (the application's p95 as the
    operator's APM shows it) None = the config's, > 0 = the probes may rise the budget's % of it
    (``probe_allowance: app_p95``)."""
    pct, lag = params.get("latency_budget_pct"), params.get("replica_lag_budget_seconds")
    app = params.get("app_p95_ms")
    budget: dict[str, Any] = {}
    if pct is not None:
        if isinstance(pct, bool) or not isinstance(pct, int | float) or pct < 0:
            raise BackfillError(f"Param latency_budget_pct must be a number >= 0 (0 = controller off), got {pct!r}")
        budget = {"enabled": False} if pct == 0 else {"enabled": True, "max_latency_increase_pct": pct}
    if lag is not None:
        if isinstance(lag, bool) or not isinstance(lag, int | float) or lag <= 0:
            raise BackfillError(f"Param replica_lag_budget_seconds must be a number of seconds > 0, got {lag!r}")
        budget["max_replication_lag"] = float(lag)
    if app is not None:
        if isinstance(app, bool) or not isinstance(app, int | float) or app <= 0:
            raise BackfillError(f"Param app_p95_ms must be the application's p95 in milliseconds (> 0), got {app!r}")
        budget.update(app_p95_ms=float(app), probe_allowance="app_p95")
    return {"budget": budget} if budget else None


def as_record(b: Backfill) -> dict[str, Any]:
    """The settings as JSON for the ledger and ``backfill_runs.settings``: config keys, durations in seconds."""
    def plain(value: Any) -> Any:
        if isinstance(value, timedelta):
            return value.total_seconds()
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(b.model_dump())
