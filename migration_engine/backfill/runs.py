"""Close a backfill pass and report on it (used by the DAG's last task and by the CLI)."""

from __future__ import annotations

import logging
from typing import Any

from migration_engine import control
from migration_engine.backfill import store
from migration_engine.backfill.settings import BackfillError

log = logging.getLogger(__name__)


def status(legacy, schema: str, run_id: int) -> dict[str, Any]:
    """The pass and its ranges, with totals (JSON-ready)."""
    run = store.get_run(legacy, schema, run_id)
    if run is None:
        raise BackfillError(f"backfill pass {run_id} does not exist in {schema}.backfill_runs")
    rows = store.ranges(legacy, schema, run_id)
    legacy.commit()
    read = sum(r.rows_read for r in rows)
    return {
        "backfill_run": run.id, "entity": run.entity, "status": run.status, "rows_total": run.rows_total,
        "rows_read": read, "rows_written": sum(r.rows_written for r in rows),
        "rows_deleted": sum(r.rows_deleted for r in rows),
        "pct": round(100.0 * read / run.rows_total, 1) if run.rows_total else 100.0,
        "ranges_done": sum(r.done for r in rows), "ranges": [
            {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.as_dict().items()} for r in rows],
    }


def finish_run(legacy, schema: str, run_id: int, *, actor: str = "backfill") -> dict[str, Any]:
    """Mark the pass done once every range is done (else raise naming the unfinished ranges)."""
    report = status(legacy, schema, run_id)
    pending = [r for r in report["ranges"] if r["status"] != "done"]
    if pending:
        desc = ", ".join(f"#{r['range_no']} {r['status']} at key {r['last_key']}/{r['key_hi']}"
                         + (f" ({r['error']})" if r.get("error") else "") for r in pending)
        raise BackfillError(f"backfill pass {run_id} ({report['entity']}) is not complete: {desc}; "
                            "re-run to resume from the checkpoints")
    if report["status"] == "running":
        store.set_run_status(legacy, schema, run_id, "done")
        control.append_audit(legacy, schema, actor=actor, action="backfill_done", target=report["entity"],
                             details={k: v for k, v in report.items() if k != "ranges"},
                             reason="every range copied")
        legacy.commit()
        report["status"] = "done"
    log.info("backfill pass %s (%s): %s, %s rows read, %s written, %s re-deleted", run_id, report["entity"],
             report["status"], f"{report['rows_read']:,}", f"{report['rows_written']:,}", report["rows_deleted"])
    return report
