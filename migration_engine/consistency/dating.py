"""Dating a difference by its rows' version column, so the re-check need not wait for it.

The re-check's wait (``consistency.recheck_delay``) exists only for in-flight dual-writes: a write
lands first on the *first-written* database (the old one until the write cutover, the new one after
it) and a moment later on the other. A row whose version column (``backfill.version_column``, a
timestamptz every write bumps) is older than its own server's ``now() - recheck_delay`` was not
written within the delay: it is *settled*. So, for a key that still differs after the scan:

- **changed** (a row on both sides): final at once iff both rows are settled - an in-flight update
  leaves the first-written side's row fresh;
- **one-sided** (a row on side S only): an in-flight insert leaves S's row fresh (dated above), but
  an in-flight *hard delete* that reached the other side T first leaves S's row as old as it was:
  it cannot be dated. So final at once iff S's row is settled and NOT (T may be written first and
  T's application hard-deletes rows of this entity: ``entities.<name>.hard_deletes``);
- anything else (no version column, a NULL version, a fresh row) waits as before.

The rule can only report a difference sooner, never hide one. Its risk is a false positive: an
application that stamps the version column from a clock far behind the database's, a write that
does not bump it, or a transaction that stamps it (``DEFAULT now()`` is the transaction's start)
and commits more than ``recheck_delay`` later makes an in-flight write look settled.

Which side is written first comes from the audit ledger's latest ``write_to_new`` change; for
``cutover.flag_propagation + recheck_delay`` after it (instances still on the old flag), or when the
ledger cannot be read, either side may be.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import psycopg2

from migration_engine import sqlfiles
from migration_engine.config import MigrationConfig
from migration_engine.consistency import keys as keylists
from migration_engine.consistency.results import Finding

log = logging.getLogger(__name__)

SIDES = ("old", "new")


@dataclass(frozen=True)
class FirstWritten:
    """The sides an in-flight write may have reached first, and why (for the log)."""

    sides: frozenset[str]
    reason: str


def first_written(conn, cfg: MigrationConfig) -> FirstWritten:
    """Which database(s) the application may be writing first, from the legacy control schema."""
    settle = cfg.cutover.flag_propagation + cfg.consistency.recheck_delay
    try:
        with conn.cursor() as cur:
            sqlfiles.run(cur, "consistency/first_written.sql", {"schema": cfg.control_schema},
                         {"settle": settle})
            row = cur.fetchone()
    except psycopg2.Error as exc:
        if not conn.autocommit:
            conn.rollback()
        msg = (exc.diag.message_primary or str(exc)).strip()
        return FirstWritten(frozenset(SIDES), f"the write cutover cannot be read ({msg}): either side may be first")
    if not conn.autocommit:
        conn.rollback()
    if row is None:
        return FirstWritten(frozenset({"old"}), "no write cutover recorded: the old database is written first")
    to_new, settled, at = row
    side = "new" if to_new else "old"
    if not settled:
        return FirstWritten(frozenset(SIDES), f"write_to_new changed at {at}, within flag propagation + "
                                              f"recheck_delay: either side may be first")
    return FirstWritten(frozenset({side}), f"write_to_new is {'on' if to_new else 'off'} since {at}: the "
                                           f"{side} database is written first")


def settled_rows(pool, table: Any, key: str, version: str, wanted: list, delay: timedelta,
                 value) -> dict[Any, bool | None]:
    """{key: settled} for the rows of ``wanted`` on one side (absent keys are left out)."""
    if not wanted:
        return {}
    with pool.get().cursor() as cur:
        sqlfiles.run(cur, "consistency/version_settled.sql", {"table": table, "key": key, "version": version},
                     {"keys": keylists.array_literal(wanted), "delay": delay})
        return {value(k): s for k, s in cur.fetchall()}


def final_now(f: Finding, old: dict[Any, bool | None], new: dict[Any, bool | None], first: frozenset[str],
              hard_deletes: frozenset[str]) -> bool:
    """Whether a still-differing key is final without waiting: every side :func:`needs` dates is
    settled (the rule in the module docstring)."""
    sides = needs(f, first, hard_deletes)
    dated = {"old": old, "new": new}
    return bool(sides) and all(dated[side].get(f.key) is True for side in sides)


def needs(f: Finding, first: frozenset[str], hard_deletes: frozenset[str]) -> tuple[str, ...]:
    """The sides whose rows must be dated to decide ``f`` (none: it cannot be final without waiting)."""
    if f.kind == "changed":
        return SIDES
    present, absent = ("old", "new") if f.kind == "missing_in_new" else ("new", "old")
    return () if absent in first and absent in hard_deletes else (present,)
