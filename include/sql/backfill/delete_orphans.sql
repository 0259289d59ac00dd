-- Backfill recheck, new side: remove rows this batch copied whose old row was deleted meanwhile
-- (the application's dual-write delete ran before our insert committed, so it could not see it).
DELETE FROM "{new_schema}"."{new_table}" AS t
WHERE t."{legacy_id}" = ANY(@keys::"{key_type}" [])
RETURNING t."{legacy_id}";
