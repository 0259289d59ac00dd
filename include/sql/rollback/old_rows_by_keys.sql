-- Rollback scenario 3: the old-table rows with the given keys ("{columns}": the mapped old columns,
-- then each transformed column's forward value computed from the row "t", so an old row that
-- already stands for the new value is kept as it is).
-- The keys are cast to the old key's type ("{key_type}": int, uuid, text ...; migration_engine/keys.py).
SELECT "{key}", "{columns}"
FROM "{table}" AS t
WHERE "{key}" = ANY(@keys::"{key_type}" []);
