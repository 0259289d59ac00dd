"""The diff's re-check of differing keys: no idle sleep, only the rest of a young key's delay."""

from __future__ import annotations

import time

import psycopg2
import pytest

from migration_engine.consistency import diff
from migration_engine.consistency.diff import diff_entity
from tests.consistency_fixtures import make_config

pytestmark = pytest.mark.timeout(120)


def _connect(dbs):
    return lambda: psycopg2.connect(dbs.legacy_dsn), lambda: psycopg2.connect(dbs.new_dsn)


@pytest.fixture
def waits(monkeypatch):
    seen: list[float] = []

    def spy(seconds: float) -> None:
        seen.append(seconds)
        time.sleep(seconds)

    monkeypatch.setattr(diff, "_sleep", spy)
    return seen


def _tamper(dbs) -> tuple[int, object]:
    """A write in flight: it landed on the old side (written first) just now and not yet on the new one.
    It stamps updated_at, so the re-check cannot date it as settled (tests/unit/test_diff_dating.py)."""
    key = dbs.query("legacy", "SELECT min(id) FROM public.marketplace_listings WHERE status = 'ACTIVE'")[0][0]
    [(stamp,)] = dbs.query("legacy", "UPDATE public.marketplace_listings SET title = 'tampered', updated_at = now() "
                                     "WHERE id = %s RETURNING updated_at", (key,))
    return key, stamp


def test_a_difference_found_just_now_waits_only_the_rest_of_its_delay(consistent, waits):
    key, _ = _tamper(consistent)
    started = time.monotonic()
    r = diff_entity(make_config(recheck_delay="2s"), "listings", *_connect(consistent))
    elapsed = time.monotonic() - started
    assert r.status == "failed" and r.keys("changed") == [key]  # a real difference is still reported
    assert len(waits) == 1 and 0 < waits[0] <= 2.0
    assert elapsed >= 2.0  # ... but only after it persisted for the whole delay


def test_a_difference_older_than_the_delay_costs_no_wait(consistent, waits):
    """Found early in a long scan (here: a slow progress callback after the last chunk): no sleep."""
    key, _ = _tamper(consistent)

    def slow_progress(msg: str) -> None:
        words = msg.split()
        if len(words) > 2 and "/" in words[2] and len(set(words[2].split("/"))) == 1:  # "n/n chunks"
            time.sleep(1.2)

    r = diff_entity(make_config(recheck_delay="1s"), "listings", *_connect(consistent), progress=slow_progress)
    assert r.status == "failed" and r.keys("changed") == [key]
    assert waits == []


def test_an_in_flight_write_that_lands_during_the_wait_clears(consistent, monkeypatch):
    """The dual-write lands while the re-check waits (not at a wall-clock time, which a slow scan on a
    loaded machine could pass before the difference was even seen)."""
    key, stamp = _tamper(consistent)
    landed: list[float] = []

    def dual_write_arrives_while_waiting(seconds: float) -> None:
        consistent.query("new", "UPDATE marketplace.service_listings SET title = 'tampered', updated_at = %s "
                                "WHERE legacy_listing_id = %s", (stamp, key))
        landed.append(seconds)
        time.sleep(seconds)

    monkeypatch.setattr(diff, "_sleep", dual_write_arrives_while_waiting)
    r = diff_entity(make_config(recheck_delay="5s"), "listings", *_connect(consistent))  # > any scan here
    assert len(landed) == 1, "the young difference waits for the rest of its delay"
    assert r.status == "passed", r.message
    assert r.details["rechecked_cleared"] == 1 and r.counts["changed"] == 0
    assert r.old_count == r.new_count
