"""Demo/fixture databases: the seed's legacy schema and the new marketplace schema, with data.

Data is generated set-based in SQL (generate_series), so 1 M listings take seconds, not minutes.
Sizes are bound as session settings (demo.*) that the SQL files read with current_setting().
"""

from __future__ import annotations

import argparse
import sys

import psycopg2

from migration_engine import sqlfiles


def _set(cur, **settings) -> None:
    for key, value in settings.items():
        sqlfiles.run(cur, "common/set_setting.sql",
                     params={"name": f"demo.{key}", "value": str(value), "is_local": False})


def _run_file(conn, name: str, **settings) -> None:
    with conn.cursor() as cur:
        _set(cur, **settings)
        sqlfiles.run(cur, name)
    conn.commit()


def create_legacy_schema(conn) -> None:
    _run_file(conn, "demo/legacy_schema.sql")


def create_new_schema(conn) -> None:
    _run_file(conn, "demo/new_schema.sql")


def install_stat_statements(conn) -> None:
    """pg_stat_statements in this database (the server must preload it: ``pgcluster.STAT_STATEMENTS``)."""
    _run_file(conn, "demo/stat_statements.sql")


def seed_legacy(conn, *, listings: int, seed: float = 0.42) -> dict[str, int]:
    if listings < 1:
        raise ValueError("listings must be >= 1")
    with conn.cursor() as cur:  # a bulk load: the schema file's 60 s timeout is too short for millions of rows
        sqlfiles.run(cur, "common/set_setting.sql", params={"name": "statement_timeout", "value": "0",
                                                            "is_local": False})
    _run_file(conn, "demo/legacy_seed.sql", listings=listings, seed=seed)
    return legacy_counts(conn)


def legacy_counts(conn) -> dict[str, int]:
    with conn.cursor() as cur:
        sqlfiles.run(cur, "demo/legacy_counts.sql")
        return dict(cur.fetchall())


def seed_new(conn, *, tenants: int, max_invoice_id: int, users: int | None = None,
             transactions: int | None = None, seed: float = 0.42) -> None:
    users = users or max(10, tenants * 5)
    transactions = transactions if transactions is not None else max(10, max_invoice_id // 10)
    _run_file(conn, "demo/new_seed.sql", tenants=tenants, users=users, transactions=transactions,
              max_invoice_id=max(1, max_invoice_id), seed=seed)


def link_marketplace_invoices(legacy_conn, new_conn) -> int | None:
    """The demo application's part of phase 1: flag the legacy invoice behind each marketplace transaction.

    Phase 1 adds ``invoices.is_marketplace_invoice`` / ``marketplace_transaction_id`` (default false /
    NULL); the seed's marketplace code fills them, and the config's count-parity check
    (``consistency.count_parity.transactions``) compares them with ``marketplace.transactions``. The
    simulator only models listings, so without this the demo could never pass phase 3. Returns the
    invoices changed, or None while the columns do not exist yet (before phase 1, after its rollback).
    """
    with legacy_conn.cursor() as cur:
        sqlfiles.run(cur, "demo/invoice_link_columns.sql")
        ready = cur.fetchone()[0]
    legacy_conn.rollback()
    if not ready:
        return None
    with new_conn.cursor() as cur:
        sqlfiles.run(cur, "demo/marketplace_transaction_invoices.sql")
        pairs = cur.fetchall()
    new_conn.rollback()
    with legacy_conn.cursor() as cur:
        sqlfiles.run(cur, "demo/link_marketplace_invoices.sql",
                     params={"txn_ids": [p[0] for p in pairs], "invoice_ids": [p[1] for p in pairs]})
        changed = cur.rowcount
    legacy_conn.commit()
    return changed


def build(legacy_dsn: str, new_dsn: str, *, listings: int, seed: float = 0.42) -> dict[str, int]:
    """Create both schemas and seed them (legacy and new may be the same database)."""
    legacy = psycopg2.connect(legacy_dsn)
    new = legacy if new_dsn == legacy_dsn else psycopg2.connect(new_dsn)
    try:
        create_legacy_schema(legacy)
        create_new_schema(new)
        install_stat_statements(legacy)
        if new is not legacy:
            install_stat_statements(new)
        counts = seed_legacy(legacy, listings=listings, seed=seed)
        seed_new(new, tenants=counts["tenants"], max_invoice_id=counts["max_invoice_id"], seed=seed)
        return counts
    finally:
        legacy.close()
        if new is not legacy:
            new.close()


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devtools.demo_data")
    ap.add_argument("--legacy-dsn", required=True)
    ap.add_argument("--new-dsn", required=True)
    ap.add_argument("--listings", type=int, default=100_000)
    args = ap.parse_args(argv)
    counts = build(args.legacy_dsn, args.new_dsn, listings=args.listings)
    print("seeded:", ", ".join(f"{k}={v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
