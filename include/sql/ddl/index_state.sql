-- One index by schema and name: validity (an interrupted CREATE INDEX CONCURRENTLY leaves
-- indisvalid = false), its table, key columns in order, uniqueness and partial-index predicate.
SELECT i.indisvalid,
       i.indisready,
       t.relname AS table_name,
       i.indisunique,
       array(
           SELECT coalesce(a.attname::text, '<expression>')
           FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k (attnum, ord)
           LEFT JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
           ORDER BY k.ord
       ) AS columns,
       pg_get_expr(i.indpred, i.indrelid) AS predicate,
       pg_get_indexdef(i.indexrelid) AS definition
FROM pg_class AS ic
JOIN pg_namespace AS n ON n.oid = ic.relnamespace
JOIN pg_index AS i ON i.indexrelid = ic.oid
JOIN pg_class AS t ON t.oid = i.indrelid
WHERE n.nspname = @schema_name
  AND ic.relname = @index_name;
