"""The dashboard's figures, read once per page view (no Airflow, no HTTP).

``load_view()`` reads the config and the control schema (one read-only connection) and returns the
view model (``model.build``) that both the HTML page and the JSON route show; every failure becomes
a ``DashboardUnavailable`` naming it. The routes are in ``migration_engine.airflow.dashboard_app``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from migration_engine.dashboard import model, phases, queries
from migration_engine.dashboard.queries import DashboardUnavailable

__all__ = ["APPLICATION_NAME", "DashboardUnavailable", "load_view"]

log = logging.getLogger(__name__)

APPLICATION_NAME = "migration-dashboard"


def load_view(now: datetime | None = None, airflow: dict[str, Any] | None = None) -> dict[str, Any]:
    """Read the config and the control schema; any failure becomes a DashboardUnavailable naming it.

    ``airflow``: the phase DAGs' latest runs, read by the Airflow layer (see ``phases``).
    """
    import psycopg2

    from migration_engine import db
    from migration_engine.config import ConfigError, load_config

    try:
        cfg = load_config()
    except ConfigError as exc:
        raise DashboardUnavailable(str(exc)) from exc
    try:
        with db.connection(cfg.connections.legacy, application_name=APPLICATION_NAME) as conn:
            raw = queries.fetch(conn, cfg.control_schema, now or datetime.now(UTC),
                                failed_runs=phases.failed_runs(airflow or {}))
    except db.MissingConnectionError as exc:
        raise DashboardUnavailable(str(exc)) from exc
    except psycopg2.Error as exc:
        log.exception("migration dashboard: query failed")
        raise DashboardUnavailable(
            f"reading the control schema {cfg.control_schema!r} through connection "
            f"{cfg.connections.legacy!r} failed: {str(exc).strip() or type(exc).__name__}"
        ) from exc
    return model.build(raw, cfg, airflow)
