-- Preflight: the column sets of a table's usable unique indexes (primary key, UNIQUE constraints,
-- unique indexes): valid, not partial, no expressions - the ones ON CONFLICT ("col") can infer and a
-- keyset walk can rely on. Read-only catalog query.
SELECT
    i.indisprimary,
    array_agg(a.attname::text ORDER BY k.ord) AS columns
FROM pg_index AS i
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k (attnum, ord)
JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = to_regclass(format('%I.%I', @schema_name, @table_name))
  AND i.indisunique
  AND i.indisvalid
  AND i.indpred IS NULL
  AND i.indexprs IS NULL
GROUP BY i.indexrelid, i.indisprimary
ORDER BY i.indisprimary DESC, i.indexrelid;
