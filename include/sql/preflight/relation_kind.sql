-- Preflight: what a name is in the database (r table, p partitioned table, v view, ...), NULL when
-- nothing has that name. Read-only catalog query.
SELECT c.relkind::text
FROM pg_class AS c
WHERE c.oid = to_regclass(format('%I.%I', @schema_name, @table_name));
