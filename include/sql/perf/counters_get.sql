-- The cumulative pg_stat_statements counters the previous sample saw, per statement.
SELECT dbid, userid, queryid, calls, total_exec_ms, updated_at
FROM "{schema}".perf_statement_counters
WHERE db = @db
