-- Every object of the control schema the migrations create, for verify(): tables, indexes (with
-- validity), functions and triggers.
SELECT 'table' AS kind, c.relname AS name, true AS valid
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = @schema_name AND c.relkind IN ('r', 'p')
UNION ALL
SELECT 'index', ic.relname, i.indisvalid
FROM pg_index AS i
JOIN pg_class AS ic ON ic.oid = i.indexrelid
JOIN pg_namespace AS n ON n.oid = ic.relnamespace
WHERE n.nspname = @schema_name
UNION ALL
SELECT 'function', p.proname, true
FROM pg_proc AS p
JOIN pg_namespace AS n ON n.oid = p.pronamespace
WHERE n.nspname = @schema_name
UNION ALL
SELECT 'trigger', t.tgname, t.tgenabled <> 'D'
FROM pg_trigger AS t
JOIN pg_class AS c ON c.oid = t.tgrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = @schema_name AND NOT t.tgisinternal;
