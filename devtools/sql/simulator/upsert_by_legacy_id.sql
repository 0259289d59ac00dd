-- Application simulator: the dual-write of one old row into the new table, keyed by the old key.
-- ON CONFLICT makes it idempotent next to the backfill. Both follow the same rule: a row is only
-- replaced by one whose version column ("{version}", e.g. updated_at) is not older, so the newest
-- committed old row wins whichever writer comes last; @always_replace turns the rule off.
-- "{columns}", "{values}" and "{excluded}" are lists composed from the column mapping
-- ("{excluded}" is excluded.<column> for each column). No row is returned when a newer one is kept.
INSERT INTO "{table}" AS t ("{legacy_id}", "{columns}")
VALUES (@legacy_id, "{values}")
ON CONFLICT ("{legacy_id}") DO UPDATE
SET ("{columns}") = ROW("{excluded}")
WHERE @always_replace OR t."{version}" IS NULL OR t."{version}" <= excluded."{version}"
RETURNING "{returning}";
