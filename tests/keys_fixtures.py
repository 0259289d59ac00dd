"""Test tables keyed by UUID and by text (not the marketplace demo schema), a config for them, and an
independent old-vs-new comparison by per-row checksums (test-side SQL, not the engine's).

Two entities, each in scope ``status = 'live'`` with one value map (``live`` -> ``LIVE`` ...):

* ``orders``: legacy ``public.kt_orders (id uuid)`` -> new ``marketplace.kt_orders (legacy_order_id uuid)``
* ``codes``: legacy ``public.kt_codes (code varchar(40))`` -> new ``marketplace.kt_codes (legacy_code
  varchar(40))``. The codes include what COPY text escapes (tab, newline, backslash), spaces,
  mixed case and non-ASCII, so a key parsed with ``int()`` or compared in Python would show.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from migration_engine.config import MigrationConfig, parse_config

ROOT = Path(__file__).resolve().parents[1]

LEGACY_DDL = """
CREATE TABLE public.kt_orders (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    title text NOT NULL,
    amount bigint,
    status text NOT NULL,
    note text,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE public.kt_codes (
    code varchar(40) PRIMARY KEY,
    title text NOT NULL,
    amount bigint,
    status text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE public.kt_odd_keys (
    id bigint PRIMARY KEY,
    as_float double precision,
    as_json json,
    as_ts timestamptz,
    status text NOT NULL DEFAULT 'live',
    title text NOT NULL DEFAULT 'x',
    amount bigint,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""

NEW_DDL = """
CREATE TABLE marketplace.kt_orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    legacy_order_id uuid UNIQUE,
    title text NOT NULL,
    amount bigint,
    status text NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE TABLE marketplace.kt_codes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    legacy_code varchar(40) UNIQUE,
    title text NOT NULL,
    amount bigint,
    status text NOT NULL,
    updated_at timestamptz NOT NULL
);
CREATE TABLE marketplace.kt_odd_keys (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    legacy_id text UNIQUE,
    title text NOT NULL,
    amount bigint,
    status text NOT NULL,
    updated_at timestamptz NOT NULL
);
"""

# Codes COPY text escapes or that sort differently by byte and by collation.
ODD_CODES = ["tab\there", "new\nline", "back\\slash", "trailing  ", " leading", "Zebra", "apple", "Äpfel",
             "ünïcødé", "a", "B", "0042", "42", "-1"]

STATUS_MAP = {"live": "LIVE", "hidden": "HIDDEN", "gone": "GONE"}


def _entity(old: str, new: str, key: str, legacy_id: str) -> dict:
    return {"old_table": old, "new_table": new, "key": key, "new_key": "id", "legacy_id_column": legacy_id,
            "scope": {"column": "status", "values": ["live"]},
            "columns": [{"new": "title", "old": "title"}, {"new": "amount", "old": "amount"},
                        {"new": "status", "old": "status", "map": STATUS_MAP},
                        {"new": "updated_at", "old": "updated_at"}]}


ENTITIES = {
    "orders": _entity("public.kt_orders", "marketplace.kt_orders", "id", "legacy_order_id"),
    "codes": _entity("public.kt_codes", "marketplace.kt_codes", "code", "legacy_code"),
}


def keys_config(sections: dict | None = None, **entity_overrides: dict) -> MigrationConfig:
    """The shipped config with its entities replaced by the test entities (+ overrides by name) and
    top-level ``sections`` replaced (``schema_changes``) or merged (a dict into a dict section)."""
    raw = yaml.safe_load((ROOT / "include" / "migration.yaml").read_text())
    raw["entities"] = {**ENTITIES, **entity_overrides}
    for name, value in (sections or {}).items():
        merge = name != "schema_changes" and isinstance(raw.get(name), dict)
        raw[name] = {**raw[name], **value} if merge else value
    return parse_config(raw)


@dataclass(frozen=True)
class KeyedTable:
    entity: str
    old_table: str
    new_table: str
    key: str
    legacy_id: str


TABLES = {
    "orders": KeyedTable("orders", "public.kt_orders", "marketplace.kt_orders", "id", "legacy_order_id"),
    "codes": KeyedTable("codes", "public.kt_codes", "marketplace.kt_codes", "code", "legacy_code"),
}


def seed(databases, n: int) -> None:
    """``n`` rows in each keyed table (~60 % live), plus the odd codes (all live)."""
    databases.query("legacy", """
        INSERT INTO public.kt_orders (title, amount, status, updated_at)
        SELECT 'order ' || g, CASE WHEN g %% 9 = 0 THEN NULL ELSE g * 7 END,
               CASE WHEN g %% 5 < 3 THEN 'live' WHEN g %% 2 = 0 THEN 'hidden' ELSE 'gone' END,
               now() - (g %% 500 || ' minutes')::interval
        FROM generate_series(1, %(n)s) AS g;
        INSERT INTO public.kt_codes (code, title, amount, status, updated_at)
        SELECT left(md5(g::text), 6 + g %% 20) || CASE WHEN g %% 3 = 0 THEN ' x' ELSE '' END, 'code ' || g,
               CASE WHEN g %% 9 = 0 THEN NULL ELSE g * 3 END,
               CASE WHEN g %% 5 < 3 THEN 'live' WHEN g %% 2 = 0 THEN 'hidden' ELSE 'gone' END,
               now() - (g %% 500 || ' minutes')::interval
        FROM generate_series(1, %(n)s) AS g
        ON CONFLICT DO NOTHING;
        INSERT INTO public.kt_codes (code, title, amount, status)
        SELECT c, 'odd ' || c, 1, 'live' FROM unnest(%(odd)s::text[]) AS c
        ON CONFLICT DO NOTHING;
        ANALYZE public.kt_orders;
        ANALYZE public.kt_codes;
    """, {"n": n, "odd": ODD_CODES})


def old_rows(databases, t: KeyedTable) -> dict[str, tuple[str, bool]]:
    """key (text) -> (checksum of the mapped row, in scope), computed without the engine."""
    rows = databases.query("legacy", f"""
        SET TimeZone = 'UTC';
        SELECT {t.key}::text, md5(concat_ws('|', title, coalesce(amount::text, '<null>'), upper(status),
                                            updated_at)), status = 'live'
        FROM {t.old_table}""")
    return {k: (d, s) for k, d, s in rows}


def new_rows(databases, t: KeyedTable) -> dict[str, str]:
    rows = databases.query("new", f"""
        SET TimeZone = 'UTC';
        SELECT {t.legacy_id}::text, md5(concat_ws('|', title, coalesce(amount::text, '<null>'), status,
                                                  updated_at))
        FROM {t.new_table}""")
    out = dict(rows)
    assert len(out) == len(rows), "duplicate legacy ids in the new table"
    return out


def assert_exact_copy(databases, t: KeyedTable) -> int:
    """Every in-scope old row has exactly one equal new row and there is no other new row."""
    old = old_rows(databases, t)
    new = new_rows(databases, t)
    want = {k: d for k, (d, scoped) in old.items() if scoped}
    missing = sorted(set(want) - set(new))
    extra = sorted(set(new) - set(want))
    different = sorted(k for k in set(want) & set(new) if want[k] != new[k])
    assert not (missing or extra or different), (f"missing {missing[:5]} extra {extra[:5]} "
                                                 f"different {different[:5]}")
    return len(want)


@pytest.fixture(name="keyed_tables")
def keyed_tables_fixture(databases):
    """The UUID- and text-keyed test tables on both sides (empty), the control schema in place."""
    from migration_engine import control

    databases.query("legacy", LEGACY_DDL)
    databases.query("new", NEW_DDL)
    legacy = databases.connect("legacy")
    control.ensure_control_schema(legacy, "migration_control")
    legacy.close()
    return TABLES
