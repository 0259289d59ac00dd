-- Backfill plan: in-scope rows whose scaled value has a fraction, for a column whose scale says
-- "rounding: error" (the batch SELECT would stop on them; better to name them before starting).
-- "{value}" is the column's scaled value without rounding (migration_engine.transforms, mode exact).
SELECT src."{key}"::text, "{value}"
FROM "{old_schema}"."{old_table}" AS src
WHERE (@all_rows OR src."{scope_column}"::text = ANY(@scope_values))
  AND "{value}" <> trunc("{value}")
ORDER BY src."{key}"
LIMIT 20;
