-- Primary-key columns of one table (in key order), with their type.
SELECT a.attname AS column_name, t.typname AS udt_name
FROM pg_index AS i
JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k (attnum, ord) ON true
JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
JOIN pg_type AS t ON t.oid = a.atttypid
WHERE i.indrelid = to_regclass(format('%I.%I', @schema_name, @table_name))
  AND i.indisprimary
ORDER BY k.ord;
