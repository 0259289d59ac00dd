-- Columns of a table, in order (empty when the table does not exist).
SELECT column_name, data_type
FROM information_schema.columns
WHERE table_schema = @schema AND table_name = @table_name
ORDER BY ordinal_position;
