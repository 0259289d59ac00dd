-- Shadow comparison, old side: the given old keys with the values the new table should hold,
-- computed exactly as the diff computes them ("{values}": value maps, transforms, the source
-- column of a looked-up column; see old_rows.sql), and whether each row is in the entity's scope.
-- A handful of keys per call, found through the key's index.
SELECT
    t."{key}" AS k,
    (NOT @scoped OR t."{scope_column}"::text = ANY(@scope_values)) AS in_scope,
    jsonb_build_array("{values}") AS v
FROM "{table}" AS t
WHERE t."{key}" = ANY(@keys);
