-- The oldest other open transactions in this database. CREATE INDEX CONCURRENTLY waits for every
-- transaction older than its snapshot even when it holds no lock on the table, so when no lock
-- holder explains a lock timeout these are the sessions to look at. Same columns as lock_holders.sql.
SELECT a.pid, 'open transaction' AS mode, true AS granted, a.state, a.application_name,
       round(extract(epoch FROM clock_timestamp() - a.xact_start)::numeric, 1) AS xact_age_s,
       left(a.query, 200) AS query
FROM pg_stat_activity AS a
WHERE a.datname = current_database()
  AND a.pid <> pg_backend_pid()
  AND a.xact_start IS NOT NULL
  AND a.backend_type = 'client backend'
ORDER BY a.xact_start
LIMIT 5;
