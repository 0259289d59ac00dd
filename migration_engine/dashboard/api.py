"""HTTP side of the dashboard: a FastAPI router behind Airflow's login, and the app the plugin mounts.

Routes (relative to the plugin's ``url_prefix``, ``/migration``):

* ``GET /dashboard``       the HTML page (shown inside the Airflow UI by the plugin's external view)
* ``GET /dashboard/data``  the same figures as JSON (``model.build``), for scripts and tests

Both require an authenticated Airflow user (``GetUserDep``: the UI's session cookie or an
``Authorization: Bearer <JWT>`` from ``POST /auth/token``); without one Airflow answers 401/403.

Extending: another engineer's routes (e.g. the Slack interactivity endpoint) can join this app with
``create_app(extra_routers=[their_router])`` in the plugin, or live in their own plugin under their
own prefix. Keep auth decisions per router: Slack's callbacks authenticate by request signature,
not by an Airflow login, so they must not inherit ``GetUserDep``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import APIRouter, FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse

from migration_engine.dashboard import DATA_PATH, PAGE_PATH, URL_PREFIX, model, page, queries
from migration_engine.dashboard.queries import DashboardUnavailable

__all__ = ["URL_PREFIX", "create_app", "load_view", "router"]

log = logging.getLogger(__name__)

APPLICATION_NAME = "migration-dashboard"

router = APIRouter(tags=["migration dashboard"])


def load_view(now: datetime | None = None) -> dict[str, Any]:
    """Read the config and the control schema; any failure becomes a DashboardUnavailable naming it."""
    import psycopg2

    from migration_engine import db
    from migration_engine.config import ConfigError, load_config

    try:
        cfg = load_config()
    except ConfigError as exc:
        raise DashboardUnavailable(str(exc)) from exc
    try:
        with db.connection(cfg.connections.legacy, application_name=APPLICATION_NAME) as conn:
            raw = queries.fetch(conn, cfg.control_schema, now or datetime.now(UTC))
    except db.MissingConnectionError as exc:
        raise DashboardUnavailable(str(exc)) from exc
    except psycopg2.Error as exc:
        log.exception("migration dashboard: query failed")
        raise DashboardUnavailable(
            f"reading the control schema {cfg.control_schema!r} through connection "
            f"{cfg.connections.legacy!r} failed: {str(exc).strip() or type(exc).__name__}"
        ) from exc
    return model.build(raw, cfg)


@router.get(PAGE_PATH, response_class=HTMLResponse, summary="Migration health dashboard (HTML)")
def dashboard_page(user: GetUserDep) -> HTMLResponse:
    try:
        view = load_view()
    except DashboardUnavailable as exc:
        return HTMLResponse(page.render_error(str(exc)), status_code=503)
    # Relative to the page's URL (<prefix>/dashboard), so it works under whatever prefix is mounted.
    return HTMLResponse(page.render(view, data_url="dashboard/data"))


@router.get(DATA_PATH, summary="Migration health figures (JSON)")
def dashboard_data(user: GetUserDep) -> JSONResponse:
    try:
        view = load_view()
    except DashboardUnavailable as exc:
        return JSONResponse({"detail": str(exc)}, status_code=503)
    return JSONResponse(jsonable_encoder(view))


def create_app(extra_routers: Iterable[APIRouter] = ()) -> FastAPI:
    """The FastAPI app the plugin mounts at ``URL_PREFIX``.

    No /docs or /openapi.json: those would be served without Airflow's login.
    """
    app = FastAPI(title="Zero-downtime migration", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(router)
    for extra in extra_routers:
        app.include_router(extra)
    return app
