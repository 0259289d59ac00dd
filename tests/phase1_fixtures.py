"""Helpers for the phase-1 and backup tests: catalog snapshots, config copies, XCom, ledger reads,
what phase 1 must have built, and engine calls on the legacy database.

The snapshot is written here independently of the engine's own catalog queries, so a test does not
check the engine with the engine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.airflow_helpers import get_dag

ROOT = Path(__file__).resolve().parents[1]

PREP = "migration_phase1_schema_prep"
ROLLBACK = "migration_phase1_rollback"
ADDED_COLUMNS = {("tenants", "marketplace_payment_mode"), ("contacts", "marketplace_user_id"),
                 ("contacts", "marketplace_first_transaction_at"), ("contacts", "marketplace_last_transaction_at"),
                 ("contacts", "marketplace_transaction_count"), ("contacts", "marketplace_total_spent_cents"),
                 ("invoices", "is_marketplace_invoice"), ("invoices", "marketplace_transaction_id")}
INDEXES = {"idx_contacts_marketplace_user_tenant", "idx_invoices_marketplace_transaction",
           "idx_invoices_marketplace_flag"}

_COLUMNS = """
SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(d.adbin, d.adrelid)
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY 1, 2
"""
_INDEXES = """
SELECT ic.relname, pg_get_indexdef(i.indexrelid), i.indisvalid, i.indisready
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_namespace n ON n.oid = ic.relnamespace
WHERE n.nspname = 'public' ORDER BY 1
"""
_CONSTRAINTS = """
SELECT c.relname, con.conname, con.contype, pg_get_constraintdef(con.oid), con.convalidated
FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' ORDER BY 1, 2
"""


def catalog_snapshot(databases) -> dict[str, list[tuple]]:
    """Columns (type, NOT NULL, default), indexes (definition, validity), constraints (validated)."""
    return {
        "columns": databases.query("legacy", _COLUMNS),
        "indexes": databases.query("legacy", _INDEXES),
        "constraints": databases.query("legacy", _CONSTRAINTS),
    }


def diff(a: dict, b: dict) -> dict[str, Any]:
    out = {}
    for key in a:
        only_a = sorted(set(a[key]) - set(b[key]))
        only_b = sorted(set(b[key]) - set(a[key]))
        if only_a or only_b:
            out[key] = {"only_before": only_a, "only_after": only_b}
    return out


def write_config(tmp_path: Path, monkeypatch, **section_overrides: dict) -> Path:
    """A copy of include/migration.yaml with sections updated, and MIGRATION_CONFIG pointed at it."""
    data = yaml.safe_load((ROOT / "include" / "migration.yaml").read_text())
    for section, values in section_overrides.items():
        data[section] = {**(data.get(section) or {}), **values}
    path = tmp_path / "migration.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv("MIGRATION_CONFIG", str(path))
    return path


def run(dag_id: str, conf: dict | None = None):
    """dag.test() the DAG; returns (dag_run, {task_id: state})."""
    dr = get_dag(dag_id).test(run_conf=conf or None)
    return dr, {ti.task_id: ti.state for ti in dr.get_task_instances()}




def ledger(databases, action_prefix: str = "") -> list[tuple]:
    return databases.query(
        "legacy",
        "SELECT action, actor, target, details FROM migration_control.audit_ledger "
        "WHERE action LIKE %s ORDER BY id", (action_prefix + "%",))


def control_schema_exists(databases) -> bool:
    return databases.query("legacy", "SELECT to_regnamespace('migration_control') IS NOT NULL")[0][0]


def assert_phase1_done(snap):
    cols = {(t, c): (typ, nn, dflt) for t, c, typ, nn, dflt in snap["columns"]}
    assert ADDED_COLUMNS <= set(cols), ADDED_COLUMNS - set(cols)
    assert cols[("tenants", "marketplace_payment_mode")] == ("character varying(50)", True,
                                                              "'manual'::character varying")
    assert cols[("contacts", "marketplace_transaction_count")] == ("integer", False, "0")
    assert cols[("invoices", "is_marketplace_invoice")] == ("boolean", False, "false")
    idx = {name: (d, valid, ready) for name, d, valid, ready in snap["indexes"]}
    assert INDEXES <= set(idx)
    assert all(idx[n][1] and idx[n][2] for n in INDEXES)
    # step 1.2's definition, not the appendix's (documented discrepancy)
    assert "(tenant_id, marketplace_transaction_id, status)" in idx["idx_invoices_marketplace_transaction"][0]
    assert "WHERE (marketplace_transaction_id IS NOT NULL)" in idx["idx_invoices_marketplace_transaction"][0]
    cons = {name: (typ, d, validated) for _t, name, typ, d, validated in snap["constraints"]}
    assert cons["chk_marketplace_payment_mode"][0] == "c" and cons["chk_marketplace_payment_mode"][2] is True
    assert "tenants_marketplace_payment_mode_not_null" not in cons  # the helper check is dropped


def plan_sql(run_steps_result: dict) -> str:
    """The statements of a ``run_steps`` dry-run result (XCom), one per line, ``;``-terminated."""
    return "\n".join(s.rstrip().rstrip(";") + ";" for step in run_steps_result["steps"] for s in step["executed"])


@contextmanager
def legacy_conn(databases) -> Iterator[Any]:
    conn = databases.connect("legacy")
    try:
        yield conn
    finally:
        conn.close()


def apply_phase1(databases, cfg, groups=("1.1", "1.2", "1.3"), *, verify: bool = True) -> None:
    """Engine-level phase 1 (what the DAG's tasks do), for tests that need it done quickly."""
    from migration_engine import phase1

    with legacy_conn(databases) as conn:
        phase1.prepare(conn, cfg)
        for group in groups:
            phase1.apply_group(conn, cfg, group, actor="test", verify=verify)
