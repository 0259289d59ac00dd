-- Repair, new side, without a version column (backfill.version_column: null): the staged old rows
-- into the target, overwriting the differing new row (the old table is the source of truth until
-- the write cutover). "{source}" / "{values}" / "{excluded}" as in backfill/upsert_newer_wins.sql.
INSERT INTO "{new_schema}"."{new_table}" AS t ("{legacy_id}", "{columns}")
SELECT s."{legacy_id}", "{values}"
FROM "{source}"
ORDER BY s."{legacy_id}"
ON CONFLICT ("{legacy_id}") DO UPDATE
SET ("{columns}") = ROW("{excluded}")
RETURNING t."{legacy_id}";
