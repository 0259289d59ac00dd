-- The type and collation of one key column (the diff's and the references' key), for the
-- supported-type check and to see that both databases order the keys alike. "default" collation
-- is resolved to the database's own (provider, collate, ICU locale: pg_database differs across
-- versions, read through to_jsonb). No row when the table or column does not exist.
SELECT
    t.typname AS udt_name,
    format_type(a.atttypid, a.atttypmod) AS data_type,
    t.typcategory AS category,
    CASE
        WHEN co.oid IS NULL THEN NULL
        WHEN co.collname = 'default' THEN concat_ws(
            ':', 'database', to_jsonb(d) ->> 'datlocprovider', d.datcollate,
            coalesce(to_jsonb(d) ->> 'daticulocale', to_jsonb(d) ->> 'datlocale')
        )
        ELSE concat_ws(':', co.collname, co.collprovider, co.collcollate, to_jsonb(co) ->> 'colliculocale')
    END AS collation,
    coalesce(co.collisdeterministic, true) AS deterministic
FROM pg_attribute AS a
JOIN pg_type AS t ON t.oid = a.atttypid
LEFT JOIN pg_collation AS co ON co.oid = a.attcollation
LEFT JOIN pg_database AS d ON d.datname = current_database()
WHERE a.attrelid = to_regclass(format('%I.%I', @schema_name, @table_name))
  AND a.attname = @column_name
  AND a.attnum > 0
  AND NOT a.attisdropped;
