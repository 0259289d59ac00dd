"""Every DAG imports cleanly, is owned, tagged, alerts on failure, and touches no DB at parse time."""

from __future__ import annotations

import socket

import pytest

from tests.airflow_helpers import load_dagbag


@pytest.fixture(scope="module")
def dagbag_without_network():
    real_connect = socket.socket.connect
    attempts = []

    def refuse(self, address):
        attempts.append(address)
        raise OSError(f"DAG parsing tried to open a connection to {address}")

    socket.socket.connect = refuse
    try:
        bag = load_dagbag()
    finally:
        socket.socket.connect = real_connect
    return bag, attempts


def test_no_import_errors_and_no_network_at_parse_time(dagbag_without_network):
    bag, attempts = dagbag_without_network
    assert not bag.import_errors, bag.import_errors
    assert not attempts
    assert "migration_setup" in bag.dags


def test_every_dag_has_owner_tags_and_failure_callback(dagbag_without_network):
    bag, _ = dagbag_without_network
    for dag_id, dag in bag.dags.items():
        assert dag.tags and "zero-downtime-migration" in dag.tags, dag_id
        assert dag.doc_md, f"{dag_id} has no doc_md for operators"
        for task in dag.tasks:
            assert task.owner == "migration", (dag_id, task.task_id)
            assert task.on_failure_callback, f"{dag_id}.{task.task_id} has no failure callback"
