"""Run DAGs for real in tests: load them from dags/ and execute with dag.test()."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def get_dag(dag_id: str):
    bag = load_dagbag()
    assert not bag.import_errors, bag.import_errors
    assert dag_id in bag.dags, f"{dag_id} not in {sorted(bag.dags)}"
    return bag.dags[dag_id]


def run_dag(dag_id: str, conf: dict | None = None):
    """Execute a DAG in-process; returns (dag_run state, {task_id: state})."""
    dag = get_dag(dag_id)
    dr = dag.test(run_conf=conf or None)
    states = {ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]": ti.state
              for ti in dr.get_task_instances()}
    return dr.state, states
