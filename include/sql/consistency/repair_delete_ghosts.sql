-- Repair (and the backfill's ghost sweep), new side: delete the new rows whose old row is gone or
-- out of scope (checked on the legacy side while these rows are locked by lock_rows.sql).
-- @keys: a list of integers or an array literal of any key type (consistency/keys.py); it takes the key column's type.
DELETE FROM "{new_schema}"."{new_table}" AS t
WHERE t."{legacy_id}" = ANY(@keys)
RETURNING t."{legacy_id}";
