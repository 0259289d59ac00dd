-- INVALID indexes of one schema: what an interrupted (or lock-timed-out) CREATE INDEX CONCURRENTLY
-- leaves behind. A later CREATE INDEX CONCURRENTLY IF NOT EXISTS would skip such an index.
SELECT ic.relname
FROM pg_index AS i
JOIN pg_class AS ic ON ic.oid = i.indexrelid
JOIN pg_namespace AS n ON n.oid = ic.relnamespace
WHERE n.nspname = @schema_name
  AND NOT i.indisvalid
ORDER BY ic.relname;
