"""Per-thread database sessions for the checks.

Each worker thread gets its own connection to each database (psycopg2 connections must not be
shared between threads mid-query). Sessions are autocommit (every query its own snapshot: no long
transaction holding back vacuum on a busy database), read-only, UTC (timestamps render the same
on both servers, which the checksums rely on) and bounded by ``consistency.statement_timeout``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from migration_engine import sqlfiles

APPLICATION_NAME = "zdm-consistency"


def configure_session(conn, statement_timeout: timedelta, *, read_only: bool = True) -> None:
    conn.autocommit = True
    # Pin everything that changes how a value is written as text: checksums hash the text form.
    settings = {"TimeZone": "UTC", "DateStyle": "ISO, MDY", "IntervalStyle": "postgres", "extra_float_digits": "1",
                "bytea_output": "hex", "statement_timeout": str(int(statement_timeout.total_seconds() * 1000))}
    if read_only:
        settings["default_transaction_read_only"] = "on"
    with conn.cursor() as cur:
        for name, value in settings.items():
            sqlfiles.run(cur, "common/set_setting.sql", params={"name": name, "value": value, "is_local": False})


class SessionPool:
    """One configured connection per thread for one database; ``close()`` closes them all."""

    def __init__(self, factory: Callable[[], Any], statement_timeout: timedelta, *, label: str):
        self._factory = factory
        self._timeout = statement_timeout
        self.label = label
        self._local = threading.local()
        self._all: list[Any] = []
        self._lock = threading.Lock()

    def get(self):
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._factory()
            configure_session(conn, self._timeout)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass

    def __enter__(self) -> SessionPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
