-- The diff's re-check (migration_engine/consistency/dating.py): for each of @keys (an array literal,
-- any key type, as old_rows.sql), whether the row's version column is older than THIS server's
-- now() - @delay: true (settled), false (written within the delay) or NULL (no version: undated).
-- Dated by the server's own clock, never the caller's.
SELECT
    t."{key}" AS k,
    t."{version}" < now() - @delay::interval AS settled
FROM "{table}" AS t
WHERE t."{key}" = ANY(@keys);
