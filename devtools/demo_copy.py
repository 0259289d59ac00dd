"""Demo / test / benchmark fixture: fill the new side with a correct copy of the ACTIVE listings.

Set-based and streamed: ``COPY (SELECT ...) TO STDOUT`` on the legacy database is piped straight
into ``COPY ... FROM STDIN`` on the new database (a staging temp table), then one
``INSERT ... SELECT`` applies the seed's mapping. 1 M listings take seconds, memory stays flat.

The mapping is written out by hand in include/sql/consistency_demo/import_listings.sql for the
demo schema (include/migration.yaml), on purpose independent of the diff engine's mapping code, so
a test that diffs this copy compares the engine against a second implementation. Not product code:
the real backfill is its own phase.
"""

from __future__ import annotations

import os
import threading

from migration_engine import sqlfiles


def copy_active_listings(legacy_conn, new_conn) -> int:
    """Copy the seed's scope (ACTIVE listings) into marketplace.service_listings; returns rows copied."""
    with new_conn.cursor() as cur:
        sqlfiles.run(cur, "consistency_demo/stage_listings.sql")
    read_fd, write_fd = os.pipe()
    errors: list[BaseException] = []

    def export() -> None:
        try:
            with os.fdopen(write_fd, "wb") as sink, legacy_conn.cursor() as cur:
                cur.copy_expert(sqlfiles.load("consistency_demo/export_active_listings.sql").text, sink)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    writer = threading.Thread(target=export, name="demo-copy-export")
    writer.start()
    try:
        with os.fdopen(read_fd, "rb") as source, new_conn.cursor() as cur:
            cur.copy_expert(sqlfiles.load("consistency_demo/copy_in_listings.sql").text, source)
    finally:
        writer.join()
    if errors:
        raise errors[0]
    legacy_conn.commit()
    with new_conn.cursor() as cur:
        sqlfiles.run(cur, "consistency_demo/import_listings.sql")
        inserted = cur.rowcount
    new_conn.commit()
    return inserted
