-- The single-column primary key of a table (NULL row when there is none or it has several columns).
SELECT a.attname, format_type(a.atttypid, a.atttypmod)
FROM pg_index AS i
JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
WHERE i.indrelid = to_regclass(@qualified_name)
  AND i.indisprimary
  AND i.indnatts = 1;
