"""Fixtures for the phase 3/4 consistency tests: consistent databases, and planted faults.

Not a conftest: import what you need. Test-side SQL is fine here (product code keeps its SQL in
include/sql). The test databases start before phase 1 with an empty new table; ``consistent``
simulates phase 1 (payment mode, contact -> marketplace user, invoices flagged for marketplace
transactions) and fills the new side with a correct set-based copy of the ACTIVE listings.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from devtools.demo_copy import copy_active_listings
from migration_engine import control
from migration_engine.config import DEFAULT_CONFIG_PATH, MigrationConfig, parse_config
from tests.airflow_helpers import xcom

SCHEMA = "migration_control"
EXTRA_KEY = 9_000_001  # a legacy id that no old row has
MISSING_INVOICE = 8_000_000


def config_dict(**consistency) -> dict:
    data = copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))
    data["consistency"].update({"recheck_delay": "100ms", **consistency})
    return data


def make_config(**consistency) -> MigrationConfig:
    return parse_config(config_dict(**consistency))


def write_config(path: Path, **consistency) -> Path:
    path.write_text(yaml.safe_dump(config_dict(**consistency), sort_keys=False))
    return path


def simulate_phase1(dbs) -> None:
    """What phase 1 + the application leave behind: the columns the checks read, filled in."""
    dbs.query("legacy", """
        ALTER TABLE public.tenants ADD COLUMN IF NOT EXISTS marketplace_payment_mode varchar(50);
        UPDATE public.tenants SET marketplace_payment_mode = (ARRAY['stripe', 'manual', 'disabled'])[1 + id % 3];
        ALTER TABLE public.contacts ADD COLUMN IF NOT EXISTS marketplace_user_id integer;
        UPDATE public.contacts SET marketplace_user_id = id WHERE id <= 50;
        ALTER TABLE public.invoices ADD COLUMN IF NOT EXISTS is_marketplace_invoice boolean DEFAULT false;
        ALTER TABLE public.invoices ADD COLUMN IF NOT EXISTS marketplace_transaction_id integer;
    """)
    txns = dbs.query("new", "SELECT id, tenant_invoice_id FROM marketplace.transactions "
                            "WHERE tenant_invoice_id IS NOT NULL")
    dbs.query("legacy", """
        UPDATE public.invoices AS i SET is_marketplace_invoice = true, marketplace_transaction_id = t.txn
        FROM unnest(%s::bigint[], %s::bigint[]) AS t (txn, invoice) WHERE i.id = t.invoice
    """, ([t for t, _ in txns], [i for _, i in txns]))


def copy_listings(dbs) -> int:
    legacy, new = dbs.connect("legacy"), dbs.connect("new")
    try:
        return copy_active_listings(legacy, new)
    finally:
        legacy.close()
        new.close()


@pytest.fixture(name="consistent")
def consistent_fixture(databases):
    """Both databases consistent (phase 1 done, listings copied) and the control schema created."""
    conn = databases.connect("legacy")
    control.ensure_control_schema(conn, SCHEMA)
    conn.close()
    simulate_phase1(databases)
    databases.copied = copy_listings(databases)
    return databases


@dataclass(frozen=True)
class Faults:
    changed_title: int        # legacy listing id whose new title differs
    missing_in_new: int       # legacy listing id deleted from the new table
    extra_in_new: int         # legacy id present only in the new table
    orphan_transaction: int   # marketplace.transactions.id pointing at a missing invoice
    invalid_payment_tenant: int
    null_payment_tenant: int


def plant_faults(dbs) -> Faults:
    """One of each fault the acceptance names, at known keys."""
    active = [r[0] for r in dbs.query("legacy", "SELECT id FROM public.marketplace_listings "
                                                "WHERE status = 'ACTIVE' ORDER BY id")]
    changed, missing = active[10], active[-3]
    dbs.query("new", "UPDATE marketplace.service_listings SET title = 'tampered' WHERE legacy_listing_id = %s",
              (changed,))
    dbs.query("new", "DELETE FROM marketplace.service_listings WHERE legacy_listing_id = %s", (missing,))
    dbs.query("new", """
        INSERT INTO marketplace.service_listings (legacy_listing_id, provider_id, title, price_cents, status)
        VALUES (%s, 1, 'only in new', 100, 'active')""", (EXTRA_KEY,))
    orphan = dbs.query("new", """
        INSERT INTO marketplace.transactions (tenant_invoice_id, amount_cents, status)
        VALUES (%s, 100, 'completed') RETURNING id""", (MISSING_INVOICE,))[0][0]
    # keep transaction count parity intact: the orphan is a reference fault, not a count fault
    dbs.query("legacy", "UPDATE public.invoices SET is_marketplace_invoice = true WHERE id = "
                        "(SELECT min(id) FROM public.invoices WHERE NOT is_marketplace_invoice)")
    dbs.query("legacy", "UPDATE public.tenants SET marketplace_payment_mode = 'bitcoin' WHERE id = 3")
    dbs.query("legacy", "UPDATE public.tenants SET marketplace_payment_mode = NULL WHERE id = 5")
    return Faults(changed, missing, EXTRA_KEY, int(orphan), 3, 5)


def repair_faults(dbs, faults: Faults) -> None:
    dbs.query("new", "UPDATE marketplace.service_listings AS n SET title = 'Listing ' || n.legacy_listing_id "
                     "WHERE legacy_listing_id = %s", (faults.changed_title,))
    dbs.query("new", "DELETE FROM marketplace.service_listings WHERE legacy_listing_id = %s", (faults.extra_in_new,))
    dbs.query("new", "DELETE FROM marketplace.transactions WHERE id = %s", (faults.orphan_transaction,))
    dbs.query("legacy", "UPDATE public.invoices SET is_marketplace_invoice = false WHERE id = "
                        "(SELECT min(id) FROM public.invoices WHERE is_marketplace_invoice "
                        "AND marketplace_transaction_id IS NULL)")
    dbs.query("legacy", "UPDATE public.tenants SET marketplace_payment_mode = 'manual' WHERE id IN (3, 5)")
    copy_listings(dbs)  # ON CONFLICT DO NOTHING: puts back only the deleted listing


# --- repair (issue 13) ---------------------------------------------------------------------------
# per-row checksums of whole rows, for "nothing else changed"
ROWS = "SELECT legacy_listing_id, md5(t::text) FROM marketplace.service_listings AS t ORDER BY 1"
OLD_ROWS = "SELECT id, md5(t::text) FROM public.marketplace_listings AS t ORDER BY 1"


@dataclass(frozen=True)
class Planted:
    ghost: int
    out_of_scope: int
    changed: int
    missing: int

    @property
    def keys(self) -> set[int]:
        return {self.ghost, self.out_of_scope, self.changed, self.missing}


def plant_repair_faults(dbs) -> Planted:
    """The four kinds a repair fixes (issue 13): ghost, out of scope, changed, missing."""
    active = [r[0] for r in dbs.query("legacy", "SELECT id FROM public.marketplace_listings "
                                                "WHERE status = 'ACTIVE' ORDER BY id")]
    p = Planted(ghost=active[3], out_of_scope=active[7], changed=active[11], missing=active[-2])
    dbs.query("legacy", "DELETE FROM public.marketplace_listing_images WHERE listing_id = %s", (p.ghost,))
    dbs.query("legacy", "DELETE FROM public.marketplace_listings WHERE id = %s", (p.ghost,))
    dbs.query("legacy", "UPDATE public.marketplace_listings SET status = 'SOLD' WHERE id = %s", (p.out_of_scope,))
    dbs.query("new", "UPDATE marketplace.service_listings SET title = 'tampered' WHERE legacy_listing_id = %s",
              (p.changed,))
    dbs.query("new", "DELETE FROM marketplace.service_listings WHERE legacy_listing_id = %s", (p.missing,))
    return p



# --- DAG tests -----------------------------------------------------------------------------------
SUITES = ["listings_count_parity", "listings_row_parity", "transactions_count_parity",
          "cross_db_reference_integrity", "tenant_payment_mode_validity", "invoice_status_validity"]


@pytest.fixture
def consistency_config(tmp_path, monkeypatch):
    """The default config (short recheck delay) with Data Docs under ``tmp_path / "gx"``."""
    path = write_config(tmp_path / "migration.yaml", data_docs_dir=str(tmp_path / "gx"))
    monkeypatch.setenv("MIGRATION_CONFIG", str(path))
    return tmp_path


def run_dag_run(dag_id: str, conf: dict | None = None):
    """dag.test() the DAG; returns (dag_run, {task_id or task_id[map_index]: state})."""
    from tests.airflow_helpers import get_dag

    dr = get_dag(dag_id).test(run_conf=conf or None)
    return dr, {ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]": ti.state
                for ti in dr.get_task_instances()}




def dry_run_changes_nothing(dbs, dag_id: str, conf: dict | None = None, *, ignore: tuple[str, ...] = ()):
    """Run ``dag_id`` with ``dry_run=True``; assert both databases are unchanged; returns the dag run."""
    from tests.snapshots import snapshot, unchanged

    before = {side: snapshot(dsn, ignore=ignore) for side, dsn in (("legacy", dbs.legacy_dsn), ("new", dbs.new_dsn))}
    dr, states = run_dag_run(dag_id, {**(conf or {}), "dry_run": True})
    assert dr.state == "success", states
    for side, dsn in (("legacy", dbs.legacy_dsn), ("new", dbs.new_dsn)):
        problems = unchanged(before[side], snapshot(dsn, ignore=ignore))
        assert not problems, f"the dry run of {dag_id} changed the {side} database: {problems}"
    return dr, states


def planned_sql(dag_run) -> str:
    """Everything the dry run's finish_run task planned (the whole consistency run step)."""
    steps = xcom(dag_run, "finish_run")["steps"]
    return "\n".join(s for step in steps for s in step["executed"])
