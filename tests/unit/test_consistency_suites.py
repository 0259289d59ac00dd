"""Great Expectations suites over real Postgres: clean data passes, planted faults fail with keys."""

from __future__ import annotations

from pathlib import Path

import psycopg2
import pytest

from migration_engine.consistency import runs, store, suites
from tests.consistency_fixtures import SCHEMA, make_config, plant_faults

pytestmark = pytest.mark.timeout(180)

SUITES = ["listings_count_parity", "listings_row_parity", "transactions_count_parity",
          "cross_db_reference_integrity", "tenant_payment_mode_validity", "invoice_status_validity"]


def _urls(dbs) -> dict[str, str]:
    return {"legacy": dbs.legacy_dsn.replace("postgresql://", "postgresql+psycopg2://"),
            "new": dbs.new_dsn.replace("postgresql://", "postgresql+psycopg2://")}


def _full_run(cfg, dbs):
    """Checks + suites of one run, the way the DAG tasks do it (minus Airflow)."""
    legacy, new = dbs.connect("legacy"), dbs.connect("new")
    try:
        run_pk = store.start_run(legacy, SCHEMA, kind="full", dag_id="test", run_id="t")
        connect = {"legacy": lambda: psycopg2.connect(dbs.legacy_dsn), "new": lambda: psycopg2.connect(dbs.new_dsn)}
        for check in runs.plan_checks(cfg):
            store.record_check(legacy, SCHEMA, run_pk, runs.execute_check(cfg, check, connect), max_keys=20)
        specs = suites.plan_suites(cfg, run_pk, legacy, new)
        outcome = suites.run_suites(cfg, specs, _urls(dbs), run_name=f"test-{run_pk}")
        return {r.name: r for r in outcome.results}, outcome
    finally:
        legacy.close()
        new.close()


def test_suites_pass_on_clean_data_and_fail_with_keys_on_faults(consistent, tmp_path):
    cfg = make_config(data_docs_dir=str(tmp_path / "gx"))
    assert suites.suite_names(cfg) == SUITES

    results, outcome = _full_run(cfg, consistent)
    assert list(results) == SUITES
    for name, r in results.items():
        assert r.status == "passed", (name, r.message)
    index = tmp_path / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    assert outcome.data_docs == str(index) and index.exists()
    html = index.read_text()
    for name in SUITES:
        assert name in html, f"Data Docs index does not name {name}"
    yml = (tmp_path / "gx" / "great_expectations.yml").read_text()
    assert "${ZDM_GX_LEGACY_URL}" in yml and consistent.legacy_name not in yml  # no connection string on disk

    faults = plant_faults(consistent)
    results, _ = _full_run(cfg, consistent)
    failed = {n for n, r in results.items() if r.status != "passed"}
    assert failed == {"listings_row_parity", "cross_db_reference_integrity", "tenant_payment_mode_validity"}
    payment = results["tenant_payment_mode_validity"]
    assert payment.counts["invalid_value"] == 1 and payment.counts["null_value"] == 1
    assert payment.keys("invalid_value") == [faults.invalid_payment_tenant]
    assert payment.keys("null_value") == [faults.null_payment_tenant]
    row = results["listings_row_parity"].message
    for key in (faults.changed_title, faults.missing_in_new, faults.extra_in_new):
        assert str(key) in row, row
    assert str(faults.orphan_transaction) in results["cross_db_reference_integrity"].message


def test_suite_on_a_column_phase1_has_not_added_yet_is_an_error_naming_it(databases, tmp_path):
    from migration_engine import control

    cfg = make_config(data_docs_dir=str(tmp_path / "gx"))
    legacy, new = databases.connect("legacy"), databases.connect("new")
    try:
        control.ensure_control_schema(legacy, SCHEMA)
        run_pk = store.start_run(legacy, SCHEMA, kind="full", dag_id="test", run_id="t")
        specs = {s.name: s for s in suites.plan_suites(cfg, run_pk, legacy, new)}
    finally:
        legacy.close()
        new.close()
    err = specs["tenant_payment_mode_validity"].error
    assert "column public.tenants.marketplace_payment_mode does not exist" in err and "phase 1" in err
    assert specs["invoice_status_validity"].error is None


def test_a_renamed_entity_does_not_break_the_next_run_in_the_same_gx_project(consistent, tmp_path):
    """The stored definitions of the previous run name assets the re-created datasource no longer has
    (an entity renamed, another config on the same GX project); GX could neither load nor delete them,
    and every later run errored with "Could not find asset named 'results_listings'"."""
    from migration_engine.config import parse_config
    from tests.consistency_fixtures import config_dict

    gx_dir = str(tmp_path / "gx")
    results, _ = _full_run(make_config(data_docs_dir=gx_dir), consistent)
    assert results["listings_row_parity"].status == "passed"
    data = config_dict(data_docs_dir=gx_dir)
    data["entities"] = {"offers": data["entities"]["listings"]}  # the same table, another entity name
    renamed = parse_config(data)
    results, outcome = _full_run(renamed, consistent)
    assert "listings_row_parity" not in results and results["offers_row_parity"].status == "passed", {
        n: (r.status, r.message) for n, r in results.items()}
    assert all(r.status == "passed" for r in results.values()), {n: r.message for n, r in results.items()}
    assert "offers_row_parity" in Path(outcome.data_docs).read_text()
