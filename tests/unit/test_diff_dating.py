"""The re-check dates a young difference by its rows' version column (consistency/dating.py).

``recheck_delay`` is one hour here and the wait hook records instead of sleeping: a difference that
waited shows up in ``waits`` (and ``recheck_waited_keys``), one final at once does not. After the
recorded "wait" the re-check reads the keys once more, so what the hook writes is the in-flight
write landing while the diff waited.
"""

from __future__ import annotations

import psycopg2
import pytest

from migration_engine.config import parse_config
from migration_engine.consistency import diff
from migration_engine.consistency.diff import diff_entity
from migration_engine.errors import ConfigError
from tests.consistency_fixtures import SCHEMA, config_dict, copy_listings, simulate_phase1

pytestmark = pytest.mark.timeout(120)

NEW = "marketplace.service_listings"


def _cfg(*, hard_deletes: list[str] | None = None, version_column: str | None = "updated_at",
         flag_propagation: str = "10s"):
    data = config_dict(recheck_delay="1h")
    if hard_deletes is not None:
        data["entities"]["listings"]["hard_deletes"] = hard_deletes
    data["backfill"]["version_column"] = version_column
    data.setdefault("cutover", {})["flag_propagation"] = flag_propagation
    return parse_config(data)


def _run(cfg, dbs):
    return diff_entity(cfg, "listings", lambda: psycopg2.connect(dbs.legacy_dsn),
                       lambda: psycopg2.connect(dbs.new_dsn))


class Waits(list):
    """The waits the re-check asked for; ``landing``: writes that land while it "waits"."""

    def __init__(self) -> None:
        super().__init__()
        self.landing: list = []


@pytest.fixture
def waits(monkeypatch) -> Waits:
    """Record each wait, run what the test lets land meanwhile, do not sleep."""
    seen = Waits()

    def record(seconds: float) -> None:
        seen.append(seconds)
        for write in seen.landing:
            write()

    monkeypatch.setattr(diff, "_sleep", record)
    return seen


def _settled_keys(dbs, n: int) -> list[int]:
    """ACTIVE listings last written more than two hours ago (older than the 1 h delay)."""
    return [r[0] for r in dbs.query("legacy", "SELECT id FROM public.marketplace_listings WHERE status = 'ACTIVE' "
                                              "AND updated_at < now() - interval '2 hours' ORDER BY id LIMIT %s", (n,))]


def _delete_old(dbs, key: int) -> None:
    dbs.query("legacy", "DELETE FROM public.marketplace_listing_images WHERE listing_id = %s", (key,))
    dbs.query("legacy", "DELETE FROM public.marketplace_listings WHERE id = %s", (key,))


def _delete_new(dbs, key: int) -> None:
    dbs.query("new", f"DELETE FROM {NEW} WHERE legacy_listing_id = %s", (key,))


def _record_cutover(dbs, ago: str) -> None:
    """A write cutover in the audit ledger ``ago`` (what control.set_flag appends; backdated)."""
    dbs.query("legacy", f"INSERT INTO {SCHEMA}.audit_ledger (at, actor, action, target, details) "
                        "VALUES (now() - %s::interval, 'test', 'set_flag', 'write_to_new', "
                        "'{\"old\": false, \"new\": true}')", (ago,))


def test_settled_changed_missing_and_extra_rows_are_reported_without_waiting(consistent, waits):
    changed, missing = _settled_keys(consistent, 2)
    consistent.query("new", f"UPDATE {NEW} SET title = 'edited' WHERE legacy_listing_id = %s", (changed,))
    _delete_new(consistent, missing)
    extra = 9_000_001
    consistent.query("new", f"INSERT INTO {NEW} (legacy_listing_id, provider_id, title, price_cents, status, "
                            "updated_at) VALUES (%s, 1, 'only in new', 100, 'active', now() - interval '2 hours')",
                     (extra,))
    r = _run(_cfg(), consistent)  # shipped hard_deletes: [new]; no cutover: old is written first
    assert r.keys("changed") == [changed] and r.keys("missing_in_new") == [missing]
    assert r.keys("missing_in_old") == [extra]
    assert waits == []
    assert r.details["recheck_settled_by_version"] == 3 and r.details["recheck_waited_keys"] == 0
    assert r.details["recheck_wait_s"] == 0


@pytest.mark.parametrize("lands", [True, False])
def test_a_fresh_in_flight_write_waits_and_clears_when_it_lands(consistent, waits, lands):
    """An update on the first-written (old) side stamps updated_at = now(): not settled, it waits."""
    [key] = _settled_keys(consistent, 1)
    [(stamp,)] = consistent.query("legacy", "UPDATE public.marketplace_listings SET title = 'renamed', "
                                            "updated_at = now() WHERE id = %s RETURNING updated_at", (key,))
    if lands:
        waits.landing.append(lambda: consistent.query(
            "new", f"UPDATE {NEW} SET title = 'renamed', updated_at = %s WHERE legacy_listing_id = %s", (stamp, key)))
    r = _run(_cfg(), consistent)
    assert len(waits) == 1 and 3500 < waits[0] <= 3600
    assert r.details["recheck_waited_keys"] == 1 and r.details["recheck_settled_by_version"] == 0
    if lands:
        assert r.status == "passed", r.message
        assert r.details["rechecked_cleared"] == 1
    else:
        assert r.keys("changed") == [key]  # still differing after the whole delay: reported


def test_a_row_missing_on_the_first_written_hard_deleting_side_waits(consistent, waits):
    """Old is written first (no cutover) and, by default, both applications hard-delete: a settled new
    row whose old row is gone may be a delete in flight, so it waits; it clears when the delete lands."""
    [key] = _settled_keys(consistent, 1)
    _delete_old(consistent, key)
    waits.landing.append(lambda: _delete_new(consistent, key))
    r = _run(_cfg(hard_deletes=["old", "new"]), consistent)
    assert len(waits) == 1 and r.details["recheck_waited_keys"] == 1
    assert r.status == "passed", r.message
    assert r.details["rechecked_cleared"] == 1


def test_the_same_row_is_final_at_once_when_the_old_application_never_hard_deletes(consistent, waits):
    [key] = _settled_keys(consistent, 1)
    _delete_old(consistent, key)
    r = _run(_cfg(hard_deletes=["new"]), consistent)
    assert waits == []
    assert r.keys("missing_in_old") == [key] and r.details["recheck_settled_by_version"] == 1


@pytest.mark.parametrize("cutover", [None, "1 day", "0 seconds"])
def test_the_first_written_side_follows_the_recorded_write_cutover(consistent, waits, cutover):
    """Both applications hard-delete. One row is gone from the old side, one from the new side.

    No cutover: old is written first, so the row gone from old waits (a delete in flight) and the one
    gone from new is final at once. A day after a recorded cutover: the other way round. Just after
    it (within flag propagation): either side may be first, both wait. The hook lands the waiting
    deletes, so what is still reported is exactly what was final at once."""
    gone_from_old, gone_from_new = _settled_keys(consistent, 2)
    _delete_old(consistent, gone_from_old)
    _delete_new(consistent, gone_from_new)
    if cutover is not None:
        _record_cutover(consistent, cutover)
    waiting = {None: [gone_from_old], "1 day": [gone_from_new], "0 seconds": [gone_from_old, gone_from_new]}[cutover]

    def land() -> None:
        for key in waiting:
            (_delete_new if key == gone_from_old else _delete_old)(consistent, key)

    waits.landing.append(land)
    r = _run(_cfg(hard_deletes=["old", "new"]), consistent)
    assert len(waits) == 1 and r.details["recheck_waited_keys"] == len(waiting)
    assert r.details["recheck_settled_by_version"] == 2 - len(waiting)
    assert r.keys("missing_in_new") == ([] if gone_from_new in waiting else [gone_from_new])
    assert r.keys("missing_in_old") == ([] if gone_from_old in waiting else [gone_from_old])
    assert r.details["rechecked_cleared"] == len(waiting)


def test_a_null_version_is_undated_and_waits(consistent, waits):
    [key] = _settled_keys(consistent, 1)
    consistent.query("new", f"ALTER TABLE {NEW} ALTER COLUMN updated_at DROP NOT NULL")
    consistent.query("new", f"UPDATE {NEW} SET title = 'edited', updated_at = NULL WHERE legacy_listing_id = %s",
                     (key,))
    r = _run(_cfg(), consistent)
    assert len(waits) == 1 and r.details["recheck_settled_by_version"] == 0
    assert r.keys("changed") == [key]


def test_without_a_version_column_every_young_difference_waits_as_before(consistent, waits):
    [key] = _settled_keys(consistent, 1)
    consistent.query("new", f"UPDATE {NEW} SET title = 'edited' WHERE legacy_listing_id = %s", (key,))
    r = _run(_cfg(version_column=None), consistent)
    assert len(waits) == 1 and 3500 < waits[0] <= 3600
    assert r.details["recheck_waited_keys"] == 1 and r.details["recheck_settled_by_version"] == 0
    assert r.keys("changed") == [key] and r.details["notes"] == []


def test_a_version_column_without_time_zone_is_not_dated(consistent, waits):
    """A ``timestamp`` carries no zone (the application may write local time): undated, with a note."""
    [key] = _settled_keys(consistent, 1)
    consistent.query("legacy", "ALTER TABLE public.marketplace_listings ALTER COLUMN updated_at TYPE timestamp")
    consistent.query("new", f"ALTER TABLE {NEW} ALTER COLUMN updated_at TYPE timestamp")
    consistent.query("new", f"UPDATE {NEW} SET title = 'edited' WHERE legacy_listing_id = %s", (key,))
    r = _run(_cfg(), consistent)
    assert len(waits) == 1 and r.details["recheck_settled_by_version"] == 0
    assert any("public.marketplace_listings.updated_at is timestamp; marketplace.service_listings.updated_at is "
               "timestamp" in n for n in r.details["notes"]), r.details
    assert r.keys("changed") == [key]


def test_without_a_readable_ledger_either_side_may_be_written_first(databases, waits):
    """No control schema: the cutover cannot be read, so the new side (which hard-deletes in the shipped
    config) may be first, and a row gone from it waits."""
    simulate_phase1(databases)
    copy_listings(databases)
    [key] = _settled_keys(databases, 1)
    _delete_new(databases, key)
    r = _run(_cfg(), databases)
    assert len(waits) == 1 and r.details["recheck_waited_keys"] == 1
    assert r.keys("missing_in_new") == [key]


@pytest.mark.parametrize(("value", "says"), [
    (["old", "legacy"], "entities.listings.hard_deletes.1"),
    (["new", "new"], "entities.listings.hard_deletes: Value error, lists a side twice"),
    ("new", "entities.listings.hard_deletes: Input should be a valid list"),
])
def test_hard_deletes_is_validated_naming_the_path(value, says):
    data = config_dict()
    data["entities"]["listings"]["hard_deletes"] = value
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    assert says in str(exc.value)


def test_the_shipped_config_declares_that_only_the_new_application_hard_deletes():
    assert parse_config(config_dict()).entities["listings"].hard_deletes == ["new"]
    data = config_dict()
    del data["entities"]["listings"]["hard_deletes"]
    assert parse_config(data).entities["listings"].hard_deletes == ["old", "new"]  # the conservative default
