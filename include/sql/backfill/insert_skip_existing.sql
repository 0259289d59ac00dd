-- Backfill, new side, without a version column: insert the staged batch, never touch a row that
-- already exists (a dual-write or an earlier pass wrote it). Idempotent on the unique legacy id.
-- "{source}" / "{values}" as in upsert_newer_wins.sql.
INSERT INTO "{new_schema}"."{new_table}" AS t ("{legacy_id}", "{columns}")
SELECT s."{legacy_id}", "{values}"
FROM "{source}"
ORDER BY s."{legacy_id}"
ON CONFLICT ("{legacy_id}") DO NOTHING;

