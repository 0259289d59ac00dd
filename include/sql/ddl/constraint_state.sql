-- One table constraint by name: its type, whether it has been validated, and its definition.
SELECT con.contype, con.convalidated, pg_get_constraintdef(con.oid) AS definition
FROM pg_constraint AS con
JOIN pg_class AS c ON c.oid = con.conrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = @schema_name
  AND c.relname = @table_name
  AND con.conname = @constraint_name;
