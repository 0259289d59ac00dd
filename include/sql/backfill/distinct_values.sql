-- Backfill plan: the distinct in-scope values of a looked-up column (e.g. tenant ids), to check
-- that the new side can resolve them all.
SELECT DISTINCT src."{column}"
FROM "{old_schema}"."{old_table}" AS src
WHERE (@all_rows OR src."{scope_column}"::text = ANY(@scope_values))
  AND src."{column}" IS NOT NULL;
