-- This database's statements as pg_stat_statements counts them (cumulative since its last reset).
-- Reading other roles' query text and queryid needs pg_read_all_stats; without it both are hidden
-- (NULL / <insufficient privilege>) and the statement cannot be attributed (the sampler says so).
SELECT s.userid, s.dbid, s.queryid, s.query, s.calls, s.total_exec_time, s.mean_exec_time,
       s.stddev_exec_time, s.min_exec_time, s.max_exec_time
FROM "{ext_schema}".pg_stat_statements AS s
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND s.calls > 0
