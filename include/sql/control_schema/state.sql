-- What is there: the schema, its schema_version table, and how many other tables (an unversioned
-- control schema, made before versioned migrations, has tables but no schema_version).
SELECT
    EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = @schema_name) AS schema_exists,
    EXISTS (
        SELECT 1 FROM pg_class AS c
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname = @schema_name AND c.relname = 'schema_version' AND c.relkind = 'r'
    ) AS versioned,
    (
        SELECT count(*) FROM pg_class AS c
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname = @schema_name AND c.relkind IN ('r', 'p') AND c.relname <> 'schema_version'
    ) AS other_tables;
