"""The migration_rollback_dual_write DAG (rollback scenario 1) with the simulator driving traffic."""

from __future__ import annotations

import pytest

from tests.cutover_fixtures import check_flag_rollback, check_flag_rollback_dry_run

pytestmark = pytest.mark.timeout(240)


def test_rollback_dag_sets_flag_and_verifies_recovery(databases, airflow_db, fake_slack, tmp_path, monkeypatch):
    check_flag_rollback("dual_write", databases, fake_slack, tmp_path, monkeypatch)


def test_dry_run_prints_the_plan_and_changes_nothing(databases, airflow_db, fake_slack, tmp_path, monkeypatch):
    check_flag_rollback_dry_run("migration_rollback_dual_write", databases, tmp_path, monkeypatch)
