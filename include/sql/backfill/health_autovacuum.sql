-- Backfill throttle: vacuums in progress on one table of this database (autovacuum workers and
-- manual VACUUM both show in pg_stat_progress_vacuum), GitLab's AutovacuumActiveOnTable signal.
SELECT
    count(*)::bigint AS vacuums,
    count(*) FILTER (WHERE a.backend_type = 'autovacuum worker')::bigint AS autovacuums
FROM pg_stat_progress_vacuum AS p
JOIN pg_class AS c ON c.oid = p.relid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_activity AS a ON a.pid = p.pid
WHERE p.datname = current_database()
  AND n.nspname = @table_schema
  AND c.relname = @table_name;
