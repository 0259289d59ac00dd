"""Everything a dry run must leave untouched, as one comparable value (test-side SQL is fine here).

``snapshot(dsn)`` captures the catalog (tables, columns, indexes, constraints, comments) and, for every
table in every non-system schema, its row count and an md5 over all its rows in key order. Two
snapshots taken around a dry run must be equal: no DDL, no data, no flag, no ledger entry, no
step state changed. ``ignore`` names tables whose rows may change (say why at the call site).
"""

from __future__ import annotations

import psycopg2
from psycopg2 import sql

_CATALOG = """
SELECT 'column', table_schema || '.' || table_name || '.' || column_name,
       data_type || coalesce(' default ' || column_default, '') || ' ' || is_nullable
FROM information_schema.columns
WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
UNION ALL
SELECT 'index', schemaname || '.' || indexname, indexdef FROM pg_indexes
WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
UNION ALL
SELECT 'constraint', n.nspname || '.' || c.conname, pg_get_constraintdef(c.oid) || ' valid=' || c.convalidated
FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
UNION ALL
SELECT 'comment', n.nspname || '.' || c.relname, obj_description(c.oid, 'pg_class')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND obj_description(c.oid, 'pg_class') IS NOT NULL
ORDER BY 1, 2
"""

_TABLES = """
SELECT table_schema, table_name FROM information_schema.tables
WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1, 2
"""


def snapshot(dsn: str, *, ignore: tuple[str, ...] = ()) -> dict:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(_CATALOG)
            out: dict = {"catalog": cur.fetchall(), "rows": {}}
            cur.execute(_TABLES)
            for schema, table in cur.fetchall():
                name = f"{schema}.{table}"
                if name in ignore or table in ignore:
                    continue
                cur.execute(sql.SQL("SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                                    "FROM {} t").format(sql.Identifier(schema, table)))
                out["rows"][name] = cur.fetchone()
        return out
    finally:
        conn.close()


def unchanged(before: dict, after: dict) -> list[str]:
    """What differs between two snapshots (empty = nothing changed), for a readable assertion."""
    problems = [f"catalog: {sorted(set(before['catalog']) ^ set(after['catalog']))[:10]}"] \
        if before["catalog"] != after["catalog"] else []
    for name in sorted(set(before["rows"]) | set(after["rows"])):
        if before["rows"].get(name) != after["rows"].get(name):
            problems.append(f"{name}: rows {before['rows'].get(name)} -> {after['rows'].get(name)}")
    return problems
