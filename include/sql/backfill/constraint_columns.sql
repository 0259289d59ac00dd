-- The columns a constraint (or a unique index) of a new-side table covers: named in the error of a
-- batch that violated it, so the operator sees entity, key, column and constraint in one line.
SELECT a.attname
FROM pg_constraint AS c
JOIN pg_class AS t ON t.oid = c.conrelid
JOIN pg_namespace AS n ON n.oid = t.relnamespace
JOIN pg_attribute AS a ON a.attrelid = t.oid AND a.attnum = ANY (c.conkey)
WHERE n.nspname = @schema_name AND t.relname = @table_name AND c.conname = @constraint_name
UNION
SELECT a.attname
FROM pg_index AS i
JOIN pg_class AS ic ON ic.oid = i.indexrelid
JOIN pg_namespace AS n ON n.oid = ic.relnamespace
JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
WHERE n.nspname = @schema_name AND ic.relname = @constraint_name
ORDER BY 1;
