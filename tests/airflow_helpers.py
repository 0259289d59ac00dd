"""Run DAGs for real in tests: load them from dags/ and execute with dag.test()."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def get_dag(dag_id: str):
    """The DAG from dags/, ready for ``dag.test()`` (see :func:`without_deadlines`)."""
    bag = load_dagbag()
    assert not bag.import_errors, bag.import_errors
    assert dag_id in bag.dags, f"{dag_id} not in {sorted(bag.dags)}"
    return without_deadlines(bag.dags[dag_id])


def without_deadlines(dag):
    """Drop the DAG's Deadline Alerts for ``dag.test()``.

    Airflow 3.3.2: ``dag.test()`` builds its scheduler DAG by serializing the DAG object, so
    ``deadline`` holds alert dicts instead of the ids of stored alerts, and a run that *succeeds*
    crashes in ``DagRun.update_state`` (``DeadlineAlertModel.get_by_id({...})``: "'dict' object has
    no attribute 'hex'"). ``dag.test()`` never fires deadlines anyway (its runs have no queued_at and
    no scheduler loop); tests/e2e/test_deadlines_e2e.py covers them with a real scheduler.
    """
    dag.deadline = None
    return dag


def run_dag(dag_id: str, conf: dict | None = None):
    """Execute a DAG in-process; returns (dag_run state, {task_id: state})."""
    dag = get_dag(dag_id)
    dr = dag.test(run_conf=conf or None)
    states = {ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]": ti.state
              for ti in dr.get_task_instances()}
    return dr.state, states


def xcom(dag_run, task_id: str, map_index: int = -1):
    """A task's return value in a finished (dag.test) run, read from the metadata DB."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.scalars(XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id,
                                                 map_indexes=map_index, key="return_value")).first()
        return XComModel.deserialize_value(row) if row is not None else None
