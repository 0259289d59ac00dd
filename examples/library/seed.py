"""Example "library": create its legacy and new schemas and fill them with deterministic data.

    python -m examples.library.seed --legacy-dsn postgresql://.../library --new-dsn postgresql://.../circulation
    python -m examples.library.seed --legacy-dsn postgresql://.../library --same-database   # one database

Deterministic: every value is arithmetic on the row number (no ``random()``), so a rerun on empty
databases gives identical tables and tests can state exact expectations. Not product code: a real
team already has its databases; this builds a small, realistic pair to run the DAGs on.

``link_patrons`` is the application's part after phase 1 (the way the demo's invoice linker is):
phase 1 adds ``patrons.circulation_member_id``; the lending application fills it from
``circulation.members``, which the config's count parity and cross-database reference then check.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import psycopg2

SQL_DIR = Path(__file__).resolve().parent / "sql"
CONFIG = Path(__file__).resolve().parent / "migration.yaml"
FULL_CONFIG = Path(__file__).resolve().parent / "migration.full.yaml"

# Sizes of the default data set; WEST loans (one in three) stay out of the migration's scope.
PATRONS, LOANS, FINES = 300, 1500, 400


def _run(dsn: str, name: str, sizes: dict[str, int] | None = None) -> None:
    """One file in one transaction; sizes are session settings the file reads (``library.loans``)."""
    conn = psycopg2.connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            for key, value in (sizes or {}).items():
                cur.execute("SELECT set_config(%s, %s, true)", (f"library.{key}", str(int(value))))
            cur.execute((SQL_DIR / name).read_text())
    finally:
        conn.close()


def build(legacy_dsn: str, new_dsn: str | None = None, *, patrons: int = PATRONS, loans: int = LOANS,
          fines: int = FINES) -> dict[str, int]:
    """Schemas and data on empty databases; ``new_dsn`` None: the new schema in the legacy database."""
    if min(patrons, loans, fines) < 1:
        raise ValueError(f"patrons, loans and fines must be >= 1, got {patrons}, {loans}, {fines}")
    new_dsn = new_dsn or legacy_dsn
    sizes = {"patrons": patrons, "loans": loans, "fines": fines}
    _run(legacy_dsn, "legacy_schema.sql")
    _run(new_dsn, "new_schema.sql")
    _run(legacy_dsn, "legacy_seed.sql", sizes)
    _run(new_dsn, "new_seed.sql", sizes)
    return sizes


def link_patrons(legacy_conn, new_conn) -> int | None:
    """Fill ``patrons.circulation_member_id`` from ``circulation.members``; the patrons changed, or None
    while phase 1's column does not exist (before phase 1, after its rollback)."""
    with legacy_conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' "
                    "AND table_name = 'patrons' AND column_name = 'circulation_member_id'")
        ready = cur.fetchone()[0] == 1
    legacy_conn.rollback()
    if not ready:
        return None
    with new_conn.cursor() as cur:
        cur.execute("SELECT legacy_patron_no, member_id FROM circulation.members WHERE legacy_patron_no IS NOT NULL")
        pairs = cur.fetchall()
    new_conn.rollback()
    with legacy_conn.cursor() as cur:
        cur.execute("UPDATE public.patrons p SET circulation_member_id = m.member_id "
                    "FROM unnest(%s::int[], %s::bigint[]) AS m(patron_no, member_id) "
                    "WHERE p.patron_no = m.patron_no AND p.circulation_member_id IS DISTINCT FROM m.member_id",
                    ([p[0] for p in pairs], [p[1] for p in pairs]))
        changed = cur.rowcount
    legacy_conn.commit()
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--legacy-dsn", required=True)
    ap.add_argument("--new-dsn", help="the new database (omit with --same-database)")
    ap.add_argument("--same-database", action="store_true", help="create the circulation schema in the legacy DB")
    ap.add_argument("--patrons", type=int, default=PATRONS)
    ap.add_argument("--loans", type=int, default=LOANS)
    ap.add_argument("--fines", type=int, default=FINES)
    args = ap.parse_args(argv)
    if bool(args.new_dsn) == args.same_database:
        ap.error("give --new-dsn, or --same-database (not both)")
    sizes = build(args.legacy_dsn, args.new_dsn, patrons=args.patrons, loans=args.loans, fines=args.fines)
    print(f"library example seeded: {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
