-- Repair (and the backfill's ghost sweep), new side: lock the new rows of the keys about to be
-- re-copied or deleted, and read their whole row first (the before-image goes to the audit ledger).
-- The lock holds off the application's dual-write of those rows until the repair commits, so a
-- row it changes meanwhile is written after the repair, never overwritten by it.
-- @keys: a list of integers or an array literal of any key type (consistency/keys.py); it takes the key column's type.
SELECT t."{legacy_id}", to_jsonb(t) AS image
FROM "{new_schema}"."{new_table}" AS t
WHERE t."{legacy_id}" = ANY(@keys)
ORDER BY t."{legacy_id}"
FOR UPDATE;
