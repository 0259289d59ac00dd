-- Backfill ghost sweep, new side: delete the new rows whose old row is gone or out of scope
-- (checked on the legacy side while these rows are locked by sweep_lock_rows.sql).
DELETE FROM "{new_schema}"."{new_table}" AS t
WHERE t."{legacy_id}" = ANY(@keys::"{key_type}" [])
RETURNING t."{legacy_id}";
