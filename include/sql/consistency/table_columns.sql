-- Columns of one table with their type (udt_name: int8, text, timestamptz, ...); empty when the
-- table does not exist. Used by the consistency preflight to name a missing table or column.
SELECT a.attname AS column_name, t.typname AS udt_name, format_type(a.atttypid, a.atttypmod) AS data_type
FROM pg_attribute AS a
JOIN pg_type AS t ON t.oid = a.atttypid
WHERE a.attrelid = to_regclass(format('%I.%I', @schema_name, @table_name))
  AND a.attnum > 0
  AND NOT a.attisdropped
ORDER BY a.attnum;
