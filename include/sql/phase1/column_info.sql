-- Validation of step 1.1/1.3 columns as information_schema reports them (what tools and people see).
SELECT data_type, character_maximum_length, numeric_precision, numeric_scale, column_default, is_nullable
FROM information_schema.columns
WHERE table_schema = @schema_name
  AND table_name = @table_name
  AND column_name = @column_name;
