"""The one layer of the product that imports Airflow.

Everything Airflow-shaped lives here: task context, the DAG header factory, the mapping of
product errors to task outcomes, operators/sensors/triggers, notifiers, callbacks and the plugins.
The engine below it (steps, gates, backfill, consistency, cutover, ...) never imports Airflow nor
this package, so it runs and is tested without Airflow; DAG files import only this layer.
"""

from migration_engine.airflow import connections as _connections
from migration_engine.airflow import metrics as _metrics

_connections.install()  # every process that loads the layer resolves connections the way Airflow does
_metrics.install()  # ... and emits the engine's metrics when they happen (gate evaluations, checkpoints)
