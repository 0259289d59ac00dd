-- Preflight: every column of a table with its type (domains resolved to their base type), one row
-- per column; no rows when the table does not exist (the caller tells the two apart with
-- relation_kind.sql). Read-only catalog query.
SELECT
    a.attname,
    coalesce(nullif(t.typbasetype, 0), a.atttypid) AS type_oid,
    CASE WHEN t.typbasetype <> 0 THEN t.typtypmod ELSE a.atttypmod END AS typmod,
    format_type(a.atttypid, a.atttypmod) AS type_name,
    coalesce(b.typcategory, t.typcategory) AS category,
    tn.nspname::text AS type_schema,
    t.typname::text AS type_ident
FROM pg_attribute AS a
JOIN pg_type AS t ON t.oid = a.atttypid
JOIN pg_namespace AS tn ON tn.oid = t.typnamespace
LEFT JOIN pg_type AS b ON b.oid = nullif(t.typbasetype, 0)
WHERE a.attrelid = to_regclass(format('%I.%I', @schema_name, @table_name))
  AND a.attnum > 0
  AND NOT a.attisdropped
ORDER BY a.attnum;
