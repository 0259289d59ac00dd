-- Backfill throttle: load signals of one database (gh-ost style): active client sessions other than
-- this one, and sessions waiting on a lock.
SELECT
    count(*) FILTER (WHERE a.state = 'active' AND a.pid <> pg_backend_pid())::bigint AS active_connections,
    count(*) FILTER (WHERE a.wait_event_type = 'Lock')::bigint AS lock_waits
FROM pg_stat_activity AS a
WHERE a.backend_type = 'client backend'
  AND a.datname = current_database();
