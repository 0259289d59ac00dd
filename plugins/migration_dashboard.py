"""Airflow UI plugin: the migration health dashboard (a page in the Airflow UI's navigation).

Thin on purpose: the routes live in ``migration_engine.dashboard.api`` and all logic below it. The
api-server mounts ``fastapi_apps`` at ``url_prefix``; the external view with ``url_route`` shows
``href`` inside the UI at ``/plugin/migration-health`` (under Browse). The app is built on its first
request (``LazyASGIApp``) because every task process imports plugin modules too. Restart the
api-server after changing this file. ``migration_engine`` must be importable (project root on
PYTHONPATH; the Docker image and ``make venv`` take care of it).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from migration_engine.dashboard import PAGE_PATH, UI_ROUTE, URL_PREFIX
from migration_engine.dashboard.asgi import LazyASGIApp


class MigrationDashboardPlugin(AirflowPlugin):
    name = "migration_dashboard"
    fastapi_apps = [
        {
            "app": LazyASGIApp("migration_engine.dashboard.api:create_app"),
            "url_prefix": URL_PREFIX,
            "name": "Zero-downtime migration dashboard",
        },
    ]
    external_views = [
        {
            "name": "Migration health",
            "href": URL_PREFIX + PAGE_PATH,
            "destination": "nav",
            "category": "browse",
            "url_route": UI_ROUTE,
        },
    ]
