"""Has anything written these tables? pg_stat_user_tables counters, read twice.

Used where the answer must be "nothing writes here any more" before acting: phase 6 renames the
old tables only after they stayed quiet, and drops them only if the counters did not move since
archiving; rollback scenario 3 syncs only after the new tables went quiet under maintenance mode.

Caveats (documented for operators): counters are per database and survive restarts, but are lost
on a crash or ``pg_stat_reset()`` - so a reset since the baseline makes the check fail closed
(``stats_reset`` is compared); a backend reports its counters within about a second (up to ~10 s
when the statistics system is busy), which is why "quiet" means "unchanged for a period".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from migration_engine import sqlfiles
from migration_engine.config import TableRef
from migration_engine.errors import MigrationError

log = logging.getLogger(__name__)


class StillWrittenError(MigrationError):
    """The tables kept receiving writes for longer than allowed."""


def qualified(table: TableRef) -> str:
    """A regclass literal with both parts quoted (to_regclass takes a text name)."""
    return '"{}"."{}"'.format(table.schema_name.replace('"', '""'), table.table.replace('"', '""'))


@dataclass(frozen=True)
class TableActivity:
    table: str
    present: bool
    relid: int | None
    writes: int
    scans: int
    stats_reset: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "present": self.present, "relid": self.relid, "writes": self.writes,
                "scans": self.scans, "stats_reset": self.stats_reset.isoformat() if self.stats_reset else None}


def table_activity(conn, tables: Sequence[TableRef]) -> dict[str, TableActivity]:
    """Counters per ``schema.table`` (each call in its own transaction: stats are cached per transaction)."""
    if not conn.autocommit:
        conn.rollback()
    names = {qualified(t): str(t) for t in tables}
    with conn.cursor() as cur:
        sqlfiles.run(cur, "cutover/table_activity.sql", params={"names": list(names)})
        rows = cur.fetchall()
    if not conn.autocommit:
        conn.rollback()
    return {names[name]: TableActivity(names[name], bool(present), relid, int(writes), int(scans), reset)
            for name, present, relid, writes, scans, reset in rows}


def wait_until_quiet(conn, tables: Sequence[TableRef], *, quiet: timedelta, timeout: timedelta,
                     poll: float = 1.0, sleep: Callable[[float], None] = time.sleep,
                     clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Return once no table's write counter moved for ``quiet``; raise after ``timeout``."""
    start = clock()
    first = last = table_activity(conn, tables)
    missing = [name for name, a in first.items() if not a.present]
    if missing:
        raise StillWrittenError(f"cannot watch {missing}: not found (or never accessed) in pg_stat_user_tables")
    quiet_since = start
    while True:
        now = clock()
        if now - quiet_since >= quiet.total_seconds():
            return {"quiet_for_s": round(now - quiet_since, 1), "waited_s": round(now - start, 1),
                    "writes_while_waiting": {n: last[n].writes - first[n].writes for n in last}}
        if now - start >= timeout.total_seconds():
            moved = {n: last[n].writes - first[n].writes for n in last if last[n].writes != first[n].writes}
            raise StillWrittenError(
                f"{', '.join(sorted(moved)) or 'the tables'} kept receiving writes for {now - start:.0f}s "
                f"(rows written while waiting: {moved}); something still writes them - check the application's "
                "flags (cache TTL), other services and jobs before retrying")
        sleep(min(poll, max(0.05, quiet.total_seconds() / 4)))
        current = table_activity(conn, tables)
        if any(current[n].writes != last[n].writes for n in current):
            quiet_since = clock()
            log.info("still written: %s", {n: current[n].writes - last[n].writes for n in current})
        last = current
