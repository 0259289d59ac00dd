-- Rollback scenario 3: the next batch of old-table rows that must have a live row in the new table
-- (keyset pagination): in the entity's scope ("{scope_column}" = ANY(@scope_values), every row when
-- @all_rows) and not marked deleted by an earlier rollback ("{mark_column}" = @mark_value, skipped
-- when @no_mark). Values compare as text, like the config writes them. "{columns}": the mapped old
-- columns.
SELECT t."{key}", "{columns}"
FROM "{table}" AS t
WHERE (@all_rows OR t."{scope_column}"::text = ANY(@scope_values))
  AND (@no_mark OR t."{mark_column}"::text IS DISTINCT FROM @mark_value)
  AND (@first_batch OR t."{key}" > @after)
ORDER BY t."{key}"
LIMIT @batch_size;
