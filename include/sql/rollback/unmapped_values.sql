-- Rollback scenario 3 pre-flight: values of a mapped column (e.g. status) that the reverse
-- mapping does not know - they could not be written back to the old table.
SELECT DISTINCT t."{column}"::text
FROM "{table}" AS t
WHERE t."{column}" IS NOT NULL
  AND NOT (t."{column}"::text = ANY(@known_values))
LIMIT 20;
