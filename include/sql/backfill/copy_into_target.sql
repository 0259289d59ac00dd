-- Backfill, new side, direct path: a batch whose key range held no new rows just before
-- (range_occupied.sql), COPY'd straight into the target - no stage, no INSERT ... SELECT; COPY
-- inserts in multi-row buffers. The legacy SELECT already resolved the looked-up columns (from the
-- map of lookup_map.sql), so its COPY text is the target's row: legacy id, then the config's columns.
-- A dual-write that lands a row of the range in between fails this on the unique legacy id (nothing
-- is written: the transaction rolls back) and the engine redoes the batch with the upsert.
COPY "{new_schema}"."{new_table}" ("{legacy_id}", "{columns}") FROM STDIN;
