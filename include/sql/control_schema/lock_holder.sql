-- Who holds the session advisory lock keyed by a name (the control-schema upgrade lock): named in
-- the error when waiting for it took too long. A bigint key is split into classid/objid.
SELECT a.pid, a.application_name, a.state,
       round(extract(epoch FROM clock_timestamp() - a.backend_start)::numeric, 1) AS session_age_s,
       left(a.query, 200) AS query
FROM pg_locks AS l
JOIN pg_stat_activity AS a ON a.pid = l.pid
WHERE l.locktype = 'advisory'
  AND l.granted
  AND l.objsubid = 1
  AND l.objid::text::bigint = (hashtext(@lock_name)::bigint & 4294967295)
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database());
