"""HTTP side of the dashboard: a FastAPI router behind Airflow's login, and the app the plugin mounts.

Routes (relative to the plugin's ``url_prefix``, ``/migration``):

* ``GET /dashboard``       the HTML page (shown inside the Airflow UI by the plugin's external view)
* ``GET /dashboard/data``  the same figures as JSON (``migration_engine.dashboard.view.load_view``)
* ``GET /dashboard/performance``       the database performance page (``migration_engine.perf``)
* ``GET /dashboard/performance/data``  its figures as JSON (``migration_engine.perf.view.load_perf_view``)

Both require an authenticated Airflow user (``GetUserDep``: the UI's session cookie or an
``Authorization: Bearer <JWT>`` from ``POST /auth/token``); without one Airflow answers 401/403.

Extending: other routes can join this app with ``create_app(extra_routers=[their_router])`` in the
plugin, or live in their own plugin under their own prefix. Keep auth decisions per router: Slack's
callbacks authenticate by request signature, not by an Airflow login, so they must not inherit
``GetUserDep`` (``migration_engine.airflow.slack_endpoint`` is its own app).
"""

from __future__ import annotations

from collections.abc import Iterable

from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import APIRouter, FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse

from migration_engine.dashboard import DATA_PATH, PAGE_PATH, URL_PREFIX, page
from migration_engine.dashboard.view import DashboardUnavailable, load_view
from migration_engine.perf import DATA_PATH as PERF_DATA_PATH
from migration_engine.perf import PAGE_PATH as PERF_PAGE_PATH

__all__ = ["URL_PREFIX", "create_app", "router"]

router = APIRouter(tags=["migration dashboard"])


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


@router.get(PERF_PAGE_PATH, response_class=HTMLResponse, summary="Database performance of both databases (HTML)")
def performance_page(user: GetUserDep) -> HTMLResponse:
    from migration_engine.perf import page as perf_page
    from migration_engine.perf.view import PerfUnavailable, load_perf_view

    try:
        view = load_perf_view()
    except PerfUnavailable as exc:
        return HTMLResponse(perf_page.render_error(str(exc)), status_code=503)
    # Relative to the page's URL (<prefix>/dashboard/performance), like the dashboard's own links.
    return HTMLResponse(perf_page.render(view, data_url="performance/data", dashboard_url="../dashboard"))


@router.get(PERF_DATA_PATH, summary="Database performance figures (JSON)")
def performance_data(user: GetUserDep) -> JSONResponse:
    from migration_engine.perf.view import PerfUnavailable, load_perf_view

    try:
        view = load_perf_view()
    except PerfUnavailable as exc:
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
