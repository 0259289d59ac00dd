-- Backfill plan: the type of the entity's key column (keyset ranges need an integer key).
SELECT format_type(a.atttypid, a.atttypmod)
FROM pg_attribute AS a
WHERE a.attrelid = to_regclass(format('%I.%I', @schema_name, @table_name))
  AND a.attname = @column_name
  AND a.attnum > 0
  AND NOT a.attisdropped;
