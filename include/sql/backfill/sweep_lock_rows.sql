-- Backfill ghost sweep, new side: lock the candidate rows before the legacy side is asked about
-- them, so a dual-write bringing one back waits for our commit (then writes it again after it).
-- (The backfill's own copy of consistency/repair_lock_rows.sql, typed by the key: any key type.)
SELECT t."{legacy_id}"
FROM "{new_schema}"."{new_table}" AS t
WHERE t."{legacy_id}" = ANY(@keys::"{key_type}" [])
ORDER BY t."{legacy_id}"
FOR UPDATE;
