"""The product's Airflow plugins, registered through the package's ``airflow.plugins`` entry points.

Why entry points: a deployment that ``pip install``s the wheel gets the dashboard and the Slack
endpoint without copying files into ``plugins/`` (see pyproject.toml). Thin on purpose: routes live
in ``migration_engine.airflow.dashboard_app`` and ``migration_engine.airflow.slack_endpoint``.

* The dashboard page: the api-server mounts ``fastapi_apps`` at ``url_prefix``; the external view
  with ``url_route`` shows ``href`` inside the UI at ``/plugin/migration-health`` (Browse). The app is
  built on its first request (``LazyASGIApp``) because every task process imports plugins too.
* ``POST /slack/interactivity``: Slack cannot log in to Airflow, so that route - and only that one -
  has no Airflow auth; it refuses from the headers before reading the body, reads at most 1 MB, and
  every request must carry a valid Slack signature. Every other route of both apps (``/slack/health``
  included) needs an Airflow login (``tests/test_slack_endpoint_e2e.py`` walks the route tables).

Restart the api-server after changing this file.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from migration_engine.dashboard import PAGE_PATH, UI_ROUTE, URL_PREFIX
from migration_engine.dashboard.asgi import LazyASGIApp
from migration_engine.perf import PAGE_PATH as PERF_PAGE_PATH
from migration_engine.perf import UI_ROUTE as PERF_UI_ROUTE

SLACK_URL_PREFIX = "/slack"


class MigrationDashboardPlugin(AirflowPlugin):
    name = "migration_dashboard"
    fastapi_apps = [
        {
            "app": LazyASGIApp("migration_engine.airflow.dashboard_app:create_app"),
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
        {
            "name": "Migration DB performance",
            "href": URL_PREFIX + PERF_PAGE_PATH,
            "destination": "nav",
            "category": "browse",
            "url_route": PERF_UI_ROUTE,
        },
    ]


class MigrationSlackInteractivityPlugin(AirflowPlugin):
    name = "migration_slack_interactivity"
    fastapi_apps = [
        {
            "app": LazyASGIApp("migration_engine.airflow.slack_endpoint:create_app"),
            "url_prefix": SLACK_URL_PREFIX,
            "name": "Migration Slack interactivity",
        },
    ]
