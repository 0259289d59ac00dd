-- Backfill, new side, when the batch's key range held no new rows just before (range_occupied.sql):
-- the staged batch as a plain INSERT, without ON CONFLICT's speculative insertion per row. A
-- dual-write that lands a row of the range in between makes this fail on the unique legacy id
-- (nothing is written: the transaction rolls back) and the engine redoes the batch with the
-- upsert (upsert_newer_wins.sql / insert_skip_existing.sql), so the version rule still decides.
-- "{source}" / "{values}" as in upsert_newer_wins.sql.
INSERT INTO "{new_schema}"."{new_table}" AS t ("{legacy_id}", "{columns}")
SELECT s."{legacy_id}", "{values}"
FROM "{source}"
ORDER BY s."{legacy_id}";
