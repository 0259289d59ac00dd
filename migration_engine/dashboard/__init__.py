"""The migration health dashboard (seed: "Monitoring and Alerts -> Dashboard Requirements").

A page inside the Airflow UI (plugin: ``migration_engine/airflow/plugins.py``) built from the control
schema in the legacy database. The work is split so that everything but the two I/O edges is a
pure function tested without Airflow or a browser:

* ``queries``  - the only module that talks to PostgreSQL: runs ``include/sql/dashboard/*.sql``
  (aggregated in SQL, bounded row counts) and returns plain rows.
* ``model``    - rows + config -> the dashboard's view model (rates, statuses, filled series).
  The JSON endpoint returns exactly this.
* ``charts``   - inline SVG charts rendered server-side (no JavaScript, no external assets: the
  Airflow host may have no internet access).
* ``page``     - the HTML page.
* ``view``     - ``load_view()``: config + control schema -> the view model, failures named.
* the routes (auth via Airflow's ``GetUserDep``) are the Airflow layer's:
  ``migration_engine.airflow.dashboard_app``.
* ``asgi``     - builds that app on its first request, so importing the plugin stays cheap.
"""

# Where the plugin mounts the app and what the Airflow UI links to (cheap to import: the plugin
# module and every task process import this package, see ``asgi``).
URL_PREFIX = "/migration"
PAGE_PATH = "/dashboard"
DATA_PATH = "/dashboard/data"
UI_ROUTE = "migration-health"
DATA_DOCS_PATH = "/data-docs"
"""Data Docs: ``/data-docs/`` lists each suite's latest validation; ``/data-docs/site/<path>`` serves
the GX site; ``/data-docs/latest/<suite>`` redirects to the suite's newest validation page."""
