"""The DDL executor on its own: jittered backoff, exhausted retries naming the blocker, a concurrent
index build that waits for a writer politely and logs progress."""

from __future__ import annotations

import logging
import random
import threading

import psycopg2
import psycopg2.sql
import pytest

from migration_engine.config import Ddl, TableRef
from migration_engine.ddl import DdlExecutor, IndexSpec, LockRetriesExhausted

pytestmark = pytest.mark.timeout(120, method="thread")


def _ddl(**overrides) -> Ddl:
    return Ddl.model_validate({"lock_timeout": "300ms", "max_lock_retries": 20, "retry_backoff_base": "50ms",
                               "retry_backoff_max": "200ms", **overrides})


def test_backoff_is_jittered_exponential_and_capped(databases):
    conn = databases.connect("legacy")
    ex = DdlExecutor(conn, _ddl(retry_backoff_base="100ms", retry_backoff_max="1s"), rng=random.Random(7))
    for attempt, cap in ((1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)):
        delays = [ex.backoff(attempt) for _ in range(200)]
        assert all(cap / 2 <= d <= cap for d in delays), (attempt, min(delays), max(delays))
        assert max(delays) - min(delays) > cap / 4  # jittered, not a fixed delay
    conn.close()


def test_exhausted_retries_name_the_blocker(databases):
    blocker = databases.connect("legacy")
    with blocker.cursor() as cur:
        cur.execute("SELECT id FROM tenants WHERE id = 1 FOR UPDATE")
    conn = databases.connect("legacy")
    ex = DdlExecutor(conn, _ddl(max_lock_retries=2))
    table = TableRef.model_validate("public.tenants")
    with pytest.raises(LockRetriesExhausted, match=r"gave up after 3 attempts.*RowShareLock idle in transaction"):
        ex.execute("ddl/add_column.sql", {"schema": "public", "table": "tenants", "column": "x_probe",
                                          "column_type": psycopg2.sql.SQL("integer")}, table=table)
    assert ex.lock_retries == 2
    blocker.rollback()
    assert ex.column_state(table, "x_probe") is None
    blocker.close()
    conn.close()


def test_concurrent_index_build_waits_for_a_writer_politely_and_logs_progress(databases, caplog):
    """CREATE INDEX CONCURRENTLY waits for open writers; with lock_timeout it gives up, leaves an INVALID
    index, and the retry drops and rebuilds it; progress is polled from a second connection."""
    writer = databases.connect("legacy")
    with writer.cursor() as cur:  # an open write transaction on contacts
        cur.execute("UPDATE contacts SET name = name WHERE id = 1")
    release = threading.Timer(1.5, writer.commit)
    release.start()
    conn = databases.connect("legacy")
    ex = DdlExecutor(conn, _ddl(), connect=lambda: databases.connect("legacy"), progress_interval=0.05)
    spec = IndexSpec(schema="public", table="contacts", name="idx_probe_progress", columns=("tenant_id", "name"))
    with caplog.at_level(logging.INFO, logger="migration_engine.ddl"):
        outcome = ex.ensure_index(spec)
    release.join()
    assert outcome == "rebuilt"  # the first attempt timed out waiting for the writer and left it INVALID
    assert ex.lock_retries >= 1 and ex.invalid_indexes_rebuilt >= 1
    messages = [r.getMessage() for r in caplog.records]
    assert any("building index idx_probe_progress: phase=waiting for writers before build" in m for m in messages), \
        messages
    state = ex.index_state("public", "idx_probe_progress")
    assert state["indisvalid"] and state["columns"] == ["tenant_id", "name"]
    writer.close()
    conn.close()
