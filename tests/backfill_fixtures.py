"""Helpers for backfill tests: more legacy rows, and old-vs-new equality by per-row checksums.

The checksum covers every mapped column of the seed's listings mapping, computed independently of
the engine: the old side applies the status map and keeps tenant_id; the new side translates
provider_id back to the provider's tenant_id. Test-side SQL (product code keeps SQL in files).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

OLD_ROWS = """
SELECT id, md5(concat_ws('|', title, coalesce(description, '<null>'), price_cents,
    CASE status WHEN 'ACTIVE' THEN 'active' WHEN 'PAUSED' THEN 'paused' WHEN 'SOLD' THEN 'sold'
                WHEN 'ARCHIVED' THEN 'archived' END,
    created_at, updated_at, tenant_id)), status = 'ACTIVE'
FROM public.marketplace_listings
"""

NEW_ROWS = """
SELECT sl.legacy_listing_id, md5(concat_ws('|', sl.title, coalesce(sl.description, '<null>'), sl.price_cents,
    sl.status, sl.created_at, sl.updated_at, p.tenant_id))
FROM marketplace.service_listings AS sl
LEFT JOIN marketplace.providers AS p ON p.id = sl.provider_id
"""


@dataclass
class Comparison:
    in_scope: int  # old rows with status ACTIVE
    new_rows: int
    duplicates: int
    missing: list  # in-scope old keys with no new row
    different: list  # keys whose new row differs from the mapped old row
    orphans: list  # new rows whose old row does not exist

    @property
    def equal(self) -> bool:
        return not (self.duplicates or self.missing or self.different or self.orphans)

    def __str__(self) -> str:
        return (f"in_scope={self.in_scope} new={self.new_rows} dup={self.duplicates} missing={self.missing[:10]} "
                f"different={self.different[:10]} orphans={self.orphans[:10]}")


def compare(databases) -> Comparison:
    """Every in-scope old row has exactly one equal new row; every new row equals its old row."""
    old = {k: (digest, scoped) for k, digest, scoped in databases.query("legacy", "SET TimeZone = 'UTC';" + OLD_ROWS)}
    new_rows = databases.query("new", "SET TimeZone = 'UTC';" + NEW_ROWS)
    (dups,) = databases.query("new", "SELECT count(*) - count(DISTINCT legacy_listing_id) "
                                     "FROM marketplace.service_listings")[0]
    new = dict(new_rows)
    in_scope = [k for k, (_d, scoped) in old.items() if scoped]
    return Comparison(
        in_scope=len(in_scope), new_rows=len(new_rows), duplicates=dups,
        missing=sorted(k for k in in_scope if k not in new),
        different=sorted(k for k, digest in new.items() if k in old and old[k][0] != digest),
        orphans=sorted(k for k in new if k not in old),
    )


def add_listings(databases, n: int) -> None:
    """Append ``n`` legacy listings (~70 % ACTIVE) set-based, like the demo seed."""
    databases.query("legacy", """
        INSERT INTO public.marketplace_listings (tenant_id, title, description, price_cents, status, created_at,
                                                 updated_at)
        SELECT 1 + (g %% 10), 'Extra listing ' || g, CASE WHEN g %% 7 = 0 THEN NULL ELSE 'Extra #' || g END,
               1000 + (g * 37) %% 200000,
               CASE WHEN g %% 10 < 7 THEN 'ACTIVE' WHEN g %% 2 = 0 THEN 'PAUSED' ELSE 'SOLD' END,
               now() - (g %% 1000 || ' hours')::interval, now() - (g %% 100 || ' hours')::interval
        FROM generate_series(1, %s) AS g;
        ANALYZE public.marketplace_listings;
    """, (n,))


@pytest.fixture(name="backfill_conns")
def backfill_conns_fixture(databases):
    """(legacy, new) connections of the test databases, with the control schema in place."""
    from migration_engine import control

    legacy, new = databases.connect("legacy"), databases.connect("new")
    control.ensure_control_schema(legacy, "migration_control")
    yield legacy, new
    legacy.close()
    new.close()


def connectors(databases):
    """Connection factories for RangeWorker (one fresh connection per call)."""
    import psycopg2

    return (lambda: psycopg2.connect(databases.legacy_dsn)), (lambda: psycopg2.connect(databases.new_dsn))
