-- Rollback scenario 3: the old-table rows with the given keys ("{columns}": the mapped old columns).
SELECT "{key}", "{columns}"
FROM "{table}"
WHERE "{key}" = ANY(@keys);
