-- Other sessions holding or waiting for locks on any relation of one schema: logged on every
-- lock-timeout retry of a statement that has no single table (a control-schema migration).
SELECT l.pid, l.mode, l.granted, a.state, a.application_name,
       round(extract(epoch FROM clock_timestamp() - a.xact_start)::numeric, 1) AS xact_age_s,
       c.relname AS relation,
       left(a.query, 200) AS query
FROM pg_locks AS l
JOIN pg_class AS c ON c.oid = l.relation
JOIN pg_namespace AS n ON n.oid = c.relnamespace
JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'relation'
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND n.nspname = @schema_name
  AND l.pid <> pg_backend_pid()
ORDER BY l.granted DESC, a.xact_start
LIMIT 10;
