-- In-scope new rows without an old key: nothing in the old table can match them. Returns the
-- total and the first @page_size new keys.
SELECT count(*) OVER () AS total, n."{new_key}"
FROM "{table}" AS n
WHERE n."{legacy_id}" IS NULL
  AND (NOT @scoped OR n."{scope_column}"::text = ANY(@scope_values))
ORDER BY n."{new_key}"
LIMIT @page_size;
