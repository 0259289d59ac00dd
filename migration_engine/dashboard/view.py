"""The dashboard's figures, read once per page view (no Airflow, no HTTP).

``load_view()`` reads the config and the control schema (one read-only connection) and returns the
view model (``model.build``) that both the HTML page and the JSON route show; every failure becomes
a ``DashboardUnavailable`` naming it. The routes are in ``migration_engine.airflow.dashboard_app``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from migration_engine.dashboard import model, phases, queries
from migration_engine.dashboard.queries import DashboardUnavailable

__all__ = ["APPLICATION_NAME", "DashboardUnavailable", "load_view", "read_control"]

log = logging.getLogger(__name__)

APPLICATION_NAME = "migration-dashboard"


def read_control(unavailable: type[Exception], what: Callable[[Any], str], application_name: str,
                 read: Callable[[Any, Any], Any]) -> tuple[Any, Any]:
    """Load the config and run ``read(conn, cfg)`` on one connection to the legacy database (where the
    control schema lives): ``(cfg, result)``. Every failure - a bad config, a missing connection, a
    failing query - becomes ``unavailable`` naming it (``what(cfg)``: what was being read), so a page
    says why instead of a 500. Shared by the dashboard and the performance page."""
    import psycopg2

    from migration_engine import db
    from migration_engine.config import ConfigError, load_config

    try:
        cfg = load_config()
    except ConfigError as exc:
        raise unavailable(str(exc)) from exc
    try:
        with db.connection(cfg.connections.legacy, application_name=application_name) as conn:
            return cfg, read(conn, cfg)
    except db.MissingConnectionError as exc:
        raise unavailable(str(exc)) from exc
    except psycopg2.Error as exc:
        log.exception("%s: query failed", application_name)
        raise unavailable(
            f"reading {what(cfg)} through connection {cfg.connections.legacy!r} failed: "
            f"{str(exc).strip() or type(exc).__name__}") from exc


def load_view(now: datetime | None = None, airflow: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read the config and the control schema; any failure becomes a DashboardUnavailable naming it.

    ``airflow``: the phase DAGs' latest runs, read by the Airflow layer (see ``phases``).
    """
    cfg, raw = read_control(
        DashboardUnavailable, lambda cfg: f"the control schema {cfg.control_schema!r}", APPLICATION_NAME,
        lambda conn, cfg: queries.fetch(conn, cfg.control_schema, now or datetime.now(UTC),
                                        failed_runs=phases.failed_runs(airflow or {})))
    return model.build(raw, cfg, airflow)
