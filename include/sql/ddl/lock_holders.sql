-- Other sessions holding or waiting for locks on one relation: logged on every lock-timeout retry
-- so the operator sees who the DDL is waiting for.
SELECT l.pid, l.mode, l.granted, a.state, a.application_name,
       round(extract(epoch FROM clock_timestamp() - a.xact_start)::numeric, 1) AS xact_age_s,
       left(a.query, 200) AS query
FROM pg_locks AS l
JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'relation'
  AND l.relation = to_regclass(@qualified_name)
  AND l.pid <> pg_backend_pid()
ORDER BY l.granted DESC, a.xact_start
LIMIT 10;
