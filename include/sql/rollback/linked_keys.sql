-- Rollback scenario 3: which of these old keys a live new-table row still links to (its
-- "{legacy_id}"); an old key missing here was deleted in the new table after the cutover.
-- The keys are cast to the old key's type ("{key_type}": int, uuid, text ...; migration_engine/keys.py).
SELECT n."{legacy_id}"
FROM "{table}" AS n
WHERE n."{legacy_id}" = ANY(@keys::"{key_type}" []);
