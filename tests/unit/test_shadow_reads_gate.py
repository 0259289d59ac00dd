"""The shadow-read gate and the consistency-run gate, evaluated against real control tables."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from migration_engine import control
from migration_engine.consistency import store
from migration_engine.gates.runner import resolve
from tests.consistency_fixtures import SCHEMA, make_config

pytestmark = pytest.mark.timeout(60)

NOW = datetime.now(UTC).replace(second=0, microsecond=0)


@pytest.fixture
def conn(databases):
    c = databases.connect("legacy")
    control.ensure_control_schema(c, SCHEMA)
    yield c
    c.close()


def write_shadow(conn, *, minutes: int, reads: int, mismatches: int, cohort: str = "all",
                 skip: range | None = None, entity: str = "listings") -> None:
    """One row per minute before NOW (test-side SQL)."""
    with conn.cursor() as cur:
        for i in range(1, minutes + 1):
            if skip and i in skip:
                continue
            cur.execute(f"INSERT INTO {SCHEMA}.shadow_read_stats (entity, bucket, cohort, reads_compared, mismatches)"
                        " VALUES (%s, %s, %s, %s, %s)", (entity, NOW - timedelta(minutes=i), cohort, reads, mismatches))
    conn.commit()


def write_example(conn, key: str, cohort: str, diffs: dict, minutes_ago: int = 5) -> None:
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO {SCHEMA}.shadow_read_mismatches (entity, entity_key, cohort, diffs, observed_at) "
                    "VALUES ('listings', %s, %s, %s, %s)",
                    (key, cohort, json.dumps(diffs), NOW - timedelta(minutes=minutes_ago)))
    conn.commit()


def evaluate(conn, **params):
    evaluator, _ = resolve("shadow_reads")  # registered name, found like the triggerer finds it
    return evaluator(conn, make_config(), NOW, **params)


def test_passes_below_the_bar_with_a_cohort_breakdown(conn):
    write_shadow(conn, minutes=24 * 60, reads=10, mismatches=0, cohort="read_new_10")
    write_shadow(conn, minutes=60, reads=20, mismatches=0, cohort="read_new_25")
    # one mismatch in 15,600 reads = 0.0064 %
    with conn.cursor() as cur:
        cur.execute(f"UPDATE {SCHEMA}.shadow_read_stats SET mismatches = 1 "
                    "WHERE bucket = %s AND cohort = 'read_new_25'", (NOW - timedelta(minutes=3),))
    conn.commit()
    write_example(conn, "4711", "read_new_25", {"title": ["a", "b"]})
    r = evaluate(conn)
    assert r.status == "passed", r.reason
    assert r.figures["reads_compared"] == 24 * 60 * 10 + 60 * 20 and r.figures["mismatches"] == 1
    assert set(r.figures["cohorts"]) == {"read_new_10", "read_new_25"}
    assert r.figures["cohorts"]["read_new_25"] == {"reads": 1200, "mismatches": 1, "mismatch_pct": 0.0833,
                                                  "over_bar": False}
    assert r.figures["examples"][0]["key"] == "4711" and r.figures["examples"][0]["diffs"] == {"title": ["a", "b"]}


def test_critical_at_or_above_the_bar_names_cohort_and_examples(conn):
    write_shadow(conn, minutes=24 * 60, reads=10, mismatches=0, cohort="read_new_10")
    write_shadow(conn, minutes=100, reads=10, mismatches=1, cohort="read_new_50")  # 100 / 15,400 = 0.65 %
    write_example(conn, "99", "read_new_50", {"price_cents": [100, 120]})
    r = evaluate(conn)
    assert r.status == "critical"
    assert "at or above the maximum 0.1%" in r.reason and "read_new_50" in r.reason
    assert "99 (read_new_50: price_cents)" in r.reason
    assert r.figures["cohorts"]["read_new_50"]["over_bar"] is True


def test_fails_closed_on_thin_data_and_gaps(conn):
    write_shadow(conn, minutes=30, reads=10, mismatches=0)
    r = evaluate(conn)
    assert r.status == "waiting" and "at least 1,000 are needed" in r.reason
    write_shadow(conn, minutes=24 * 60, reads=10, mismatches=0, cohort="b", skip=range(200, 260))
    r = evaluate(conn)
    assert r.status == "waiting" and "a window with holes is not success" in r.reason
    # a high rate on thin data warns (not yet critical)
    r = evaluate(conn, min_reads=100_000, max_mismatch_pct=0.0001)
    assert r.status == "waiting"
    with conn.cursor() as cur:
        cur.execute(f"UPDATE {SCHEMA}.shadow_read_stats SET mismatches = 5")
    conn.commit()
    assert evaluate(conn, min_reads=100_000).status == "warning"


def test_bad_params_are_rejected(conn):
    with pytest.raises(ValueError, match="unknown gate param"):
        evaluate(conn, windw="1h")
    with pytest.raises(ValueError, match="not in the config"):
        evaluate(conn, entity="nope")


def test_consistency_passed_recently_gate(conn):
    cfg = make_config()
    gate, _ = resolve("consistency_passed_recently")
    assert gate(conn, cfg, NOW).status == "waiting"
    run_pk = store.start_run(conn, SCHEMA, kind="full", dag_id="migration_consistency_hourly", run_id="r")
    store.finish_run(conn, SCHEMA, run_pk, status="failed", failed_checks=["listings"], summary={})
    r = gate(conn, cfg, datetime.now(UTC))
    assert r.status == "critical" and "listings" in r.reason
    run_pk = store.start_run(conn, SCHEMA, kind="full", dag_id="migration_consistency_hourly", run_id="r2")
    store.finish_run(conn, SCHEMA, run_pk, status="passed", failed_checks=[], summary={})
    assert gate(conn, cfg, datetime.now(UTC)).status == "passed"
    assert gate(conn, cfg, datetime.now(UTC) + timedelta(hours=3)).status == "waiting"  # older than 2h
