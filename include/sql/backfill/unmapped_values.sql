-- Backfill plan: in-scope values of a mapped column that the config's map does not cover
-- (the batch SELECT would stop on them; better to say so before starting).
SELECT DISTINCT src."{column}"::text
FROM "{old_schema}"."{old_table}" AS src
WHERE (@all_rows OR src."{scope_column}"::text = ANY(@scope_values))
  AND src."{column}" IS NOT NULL
  AND NOT src."{column}"::text = ANY(@mapped_values)
LIMIT 20;
