-- One column as the catalog has it: type as Postgres spells it, NOT NULL, default expression.
SELECT format_type(a.atttypid, a.atttypmod) AS column_type,
       a.attnotnull AS not_null,
       pg_get_expr(d.adbin, d.adrelid) AS column_default
FROM pg_attribute AS a
JOIN pg_class AS c ON c.oid = a.attrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE n.nspname = @schema_name
  AND c.relname = @table_name
  AND a.attname = @column_name
  AND a.attnum > 0
  AND NOT a.attisdropped;
