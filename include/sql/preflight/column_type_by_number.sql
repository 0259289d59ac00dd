-- Preflight: the declared type of a table column by its number (a probe result column that is a
-- plain column keeps its exact type modifier, e.g. numeric(12,2)). Read-only catalog query.
SELECT a.atttypid, a.atttypmod
FROM pg_attribute AS a
WHERE a.attrelid = @table_oid AND a.attnum = @column_number;
