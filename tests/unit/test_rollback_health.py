"""Recovery judgement after rollback scenarios 1 and 2 (pure, fail-closed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from migration_engine.gates.error_rate import PathCounts
from migration_engine.rollback import health


def _state(at: datetime, reads_old=(0, 0), reads_new=(0, 0), writes_old=(0, 0), attempts=0) -> dict:
    return {"at": at.isoformat(), "since": at.isoformat(), "reads": {"old": list(reads_old), "new": list(reads_new)},
            "writes": {"old": list(writes_old), "new": [0, 0]}, "dual_write_attempts": attempts}


def test_recovery_judgement_is_fail_closed():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    t1 = t0 + timedelta(seconds=60)
    kw = {"baseline_pct": 0.2, "max_increase_points": 0.5, "min_requests": 50}
    ok = health.evaluate(_state(t0), _state(t1, reads_old=(1000, 2)), "reads", **kw)
    assert ok.status == "passed", ok.reason
    thin = health.evaluate(_state(t0), _state(t1, reads_old=(10, 0)), "reads", **kw)
    assert thin.status == "waiting" and "no data is not success" in thin.reason
    high = health.evaluate(_state(t0), _state(t1, reads_old=(1000, 30)), "reads", **kw)
    assert high.status == "waiting" and "not back at baseline" in high.reason
    still_new = health.evaluate(_state(t0), _state(t1, reads_old=(900, 0), reads_new=(100, 0)), "reads", **kw)
    assert still_new.status == "waiting" and "still served from the new tables" in still_new.reason
    dual = health.evaluate(_state(t0), _state(t1, reads_old=(500, 0), writes_old=(100, 0), attempts=7),
                           "dual_write", **kw)
    assert dual.status == "waiting" and "7 dual-writes were still attempted" in dual.reason
    assert PathCounts(0, 0).error_pct is None
