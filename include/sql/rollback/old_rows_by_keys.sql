-- Rollback scenario 3: the old-table rows with the given keys ("{columns}": the mapped old columns).
-- The keys are cast to the old key's type ("{key_type}": int, uuid, text ...; migration_engine/keys.py).
SELECT "{key}", "{columns}"
FROM "{table}"
WHERE "{key}" = ANY(@keys::"{key_type}" []);
