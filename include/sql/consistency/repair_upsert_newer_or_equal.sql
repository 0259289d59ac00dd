-- Repair, new side: the staged old rows into the target, overwriting a differing new row unless
-- the new row is strictly newer (its version column is greater: a dual-write that landed after
-- the repair read the old row). Unlike the backfill (strictly older only) an EQUAL version is
-- overwritten too: that is the row a lost or tampered write left different at the same version.
-- "{source}" / "{values}" / "{excluded}" as in backfill/upsert_newer_wins.sql.
INSERT INTO "{new_schema}"."{new_table}" AS t ("{legacy_id}", "{columns}")
SELECT s."{legacy_id}", "{values}"
FROM "{source}"
ORDER BY s."{legacy_id}"
ON CONFLICT ("{legacy_id}") DO UPDATE
SET ("{columns}") = ROW("{excluded}")
WHERE t."{version}" IS NULL OR t."{version}" <= excluded."{version}"
RETURNING t."{legacy_id}";
