"""HTTP side of the dashboard: a FastAPI router behind Airflow's login, and the app the plugin mounts.

Routes (relative to the plugin's ``url_prefix``, ``/migration``):

* ``GET /dashboard``       the HTML page (shown inside the Airflow UI by the plugin's external view)
* ``GET /dashboard/data``  the same figures as JSON (``migration_engine.dashboard.view.load_view``)
* ``GET /data-docs/``      each Great Expectations suite's latest Data Docs (``dashboard.datadocs``)
* ``GET /data-docs/latest/{suite}``  redirect to the suite's newest validation page
* ``GET /data-docs/site/{path}``     a file of the Data Docs site (path traversal refused)

Phase state comes from Airflow itself: :func:`latest_runs` reads each migration DAG's latest run
and its task instances with Airflow's ORM (this layer is the only one that imports Airflow) and
hands plain dicts to the engine (``migration_engine.dashboard.phases``).
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

import logging
import mimetypes
from collections.abc import Iterable
from typing import Any

from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import APIRouter, FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse

from migration_engine.dashboard import DATA_DOCS_PATH, DATA_PATH, PAGE_PATH, URL_PREFIX, datadocs, page, phases
from migration_engine.dashboard.view import DashboardUnavailable, load_view
from migration_engine.perf import DATA_PATH as PERF_DATA_PATH
from migration_engine.perf import PAGE_PATH as PERF_PAGE_PATH

__all__ = ["URL_PREFIX", "create_app", "latest_runs", "router"]

log = logging.getLogger(__name__)

# The Data Docs are GX's HTML with scripts: served sandboxed (an opaque origin), so nothing in them
# can use the viewer's Airflow session; never sniffed into another type.
DATA_DOCS_HEADERS = {
    "Content-Security-Policy": "sandbox allow-scripts allow-popups allow-popups-to-escape-sandbox",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
RECENT_RUNS = 5  # per DAG: the latest real (not dry-run) run is usually among the newest few


def _ui_base_url() -> str:
    """Where the Airflow UI is, for links (``[api] base_url``; "" = the page's own origin)."""
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="") or ""
    return base.rstrip("/")


def latest_runs(dag_ids: Iterable[str] = phases.TRACKED_DAG_IDS) -> dict[str, Any]:
    """Each DAG's latest run and its task instances, from Airflow's metadata DB, as plain data.

    A dry run (``conf.dry_run``) changes nothing, so it does not decide the phase's state: the
    latest real run does, and a newer dry run is mentioned. Returns ``{"available", "error",
    "base_url", "runs": {dag_id: run}}``; a failure to read is reported, never guessed around.
    """
    try:
        from airflow.models.dagrun import DagRun
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session
        from sqlalchemy import select

        runs: dict[str, Any] = {}
        with create_session() as session:
            for dag_id in dag_ids:
                recent = session.scalars(
                    select(DagRun).where(DagRun.dag_id == dag_id)
                    .order_by(DagRun.run_after.desc(), DagRun.id.desc()).limit(RECENT_RUNS)).all()
                if not recent:
                    continue
                real = [r for r in recent if not (r.conf or {}).get("dry_run")]
                chosen = real[0] if real else recent[0]
                tis = session.scalars(
                    select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == chosen.run_id)
                    .order_by(TaskInstance.start_date.asc().nulls_last(), TaskInstance.task_id)).all()
                runs[dag_id] = {
                    "dag_id": dag_id, "run_id": chosen.run_id, "state": str(chosen.state or "unknown"),
                    "run_type": str(chosen.run_type or ""), "queued_at": chosen.queued_at,
                    "start_date": chosen.start_date, "end_date": chosen.end_date,
                    "dry_run": bool((chosen.conf or {}).get("dry_run")),
                    "newer_dry_run": (recent[0].run_id if recent[0] is not chosen else None),
                    "tasks": [{"task_id": ti.task_id, "map_index": ti.map_index,
                               "state": str(ti.state) if ti.state else None, "start_date": ti.start_date,
                               "end_date": ti.end_date, "try_number": ti.try_number} for ti in tis],
                }
        return {"available": True, "error": None, "base_url": _ui_base_url(), "runs": runs}
    except Exception as exc:  # noqa: BLE001 - the page must still show the control schema's figures
        log.exception("migration dashboard: reading Airflow's DAG runs failed")
        return {"available": False, "runs": {}, "base_url": "",
                "error": f"reading Airflow's DAG runs failed: {type(exc).__name__}: {exc}"}


router = APIRouter(tags=["migration dashboard"])


@router.get(PAGE_PATH, response_class=HTMLResponse, summary="Migration health dashboard (HTML)")
def dashboard_page(user: GetUserDep) -> HTMLResponse:
    try:
        view = load_view(airflow=latest_runs())
    except DashboardUnavailable as exc:
        return HTMLResponse(page.render_error(str(exc)), status_code=503)
    # Relative to the page's URL (<prefix>/dashboard), so it works under whatever prefix is mounted.
    return HTMLResponse(page.render(view, data_url="dashboard/data"))


@router.get(DATA_PATH, summary="Migration health figures (JSON)")
def dashboard_data(user: GetUserDep) -> JSONResponse:
    try:
        view = load_view(airflow=latest_runs())
    except DashboardUnavailable as exc:
        return JSONResponse({"detail": str(exc)}, status_code=503)
    return JSONResponse(jsonable_encoder(view))


def _site():
    from migration_engine.config import ConfigError, load_config

    try:
        return datadocs.site_dir(load_config())
    except ConfigError as exc:
        raise datadocs.DataDocsError(str(exc)) from exc


def _docs_error(exc: datadocs.DataDocsError) -> HTMLResponse:
    return HTMLResponse(page.render_error(str(exc), title="Data Docs", refresh_seconds=None),
                        status_code=exc.status)


@router.get(DATA_DOCS_PATH + "/", response_class=HTMLResponse, summary="Latest Data Docs per suite")
def data_docs_index(user: GetUserDep) -> HTMLResponse:
    try:
        site = _site()
        return HTMLResponse(page.render_data_docs(datadocs.suites(site), str(site)))
    except datadocs.DataDocsError as exc:
        return _docs_error(exc)


@router.get(DATA_DOCS_PATH + "/latest/{suite}", summary="The suite's newest validation page")
def data_docs_latest(suite: str, user: GetUserDep):
    try:
        rel = datadocs.latest_page(_site(), suite)
    except datadocs.DataDocsError as exc:
        return _docs_error(exc)
    return RedirectResponse(f"../site/{rel}", status_code=307)


@router.get(DATA_DOCS_PATH + "/site/{rel:path}", summary="A file of the Data Docs site")
def data_docs_file(rel: str, user: GetUserDep):
    try:
        target = datadocs.resolve(_site(), rel)
    except datadocs.DataDocsError as exc:
        return _docs_error(exc)
    media = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return FileResponse(target, media_type=media, headers=DATA_DOCS_HEADERS)


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
