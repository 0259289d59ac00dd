"""Flag changes that are idempotent and audited, and the write cutover point.

Every phase-5/6 and rollback task changes flags through ``control.ensure_flag``: a re-run (retry,
cleared task, resumed rollback) that finds the flag already at the wanted value writes nothing, so
the ledger holds one entry per real change. The write cutover point - when ``write_to_new`` last
became true - is read from the append-only ledger, never from a mutable column.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from migration_engine import sqlfiles


@dataclass(frozen=True)
class CutoverPoint:
    audit_id: int
    at: datetime
    actor: str
    details: dict[str, Any]


def write_cutover_point(conn, schema: str) -> CutoverPoint | None:
    """The ledger entry of the latest ``write_to_new`` -> true, or None if writes never moved."""
    with conn.cursor() as cur:
        sqlfiles.run(cur, "cutover/write_cutover_point.sql", {"schema": schema})
        row = cur.fetchone()
    if not conn.autocommit:
        conn.rollback()
    return None if row is None else CutoverPoint(int(row[0]), row[1], row[2], row[3] or {})

