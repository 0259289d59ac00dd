-- Preflight: a type's name and category for a result column of the mapping probe (domains resolved
-- to their base type). Read-only catalog query.
SELECT
    coalesce(nullif(t.typbasetype, 0), t.oid) AS type_oid,
    CASE WHEN t.typbasetype <> 0 THEN t.typtypmod ELSE @typmod END AS typmod,
    format_type(t.oid, @typmod) AS type_name,
    coalesce(b.typcategory, t.typcategory) AS category,
    tn.nspname::text AS type_schema,
    t.typname::text AS type_ident
FROM pg_type AS t
JOIN pg_namespace AS tn ON tn.oid = t.typnamespace
LEFT JOIN pg_type AS b ON b.oid = nullif(t.typbasetype, 0)
WHERE t.oid = @type_oid;
