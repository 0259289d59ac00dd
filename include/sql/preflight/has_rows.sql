-- Preflight: whether a table has at least one row (a lookup table must not be empty). Reads one row.
SELECT EXISTS (SELECT 1 FROM "{schema_name}"."{table_name}");
