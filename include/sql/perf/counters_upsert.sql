-- Remember this sample's cumulative counters per statement (the next sample takes the difference).
INSERT INTO "{schema}".perf_statement_counters AS c (db, dbid, userid, queryid, calls, total_exec_ms, updated_at)
SELECT @db, r.dbid, r.userid, r.queryid, r.calls, r.total_exec_ms, @sampled_at
FROM jsonb_to_recordset(@counters::jsonb) AS r(dbid oid, userid oid, queryid bigint, calls bigint,
                                               total_exec_ms double precision)
ON CONFLICT (db, dbid, userid, queryid) DO UPDATE
SET calls = excluded.calls, total_exec_ms = excluded.total_exec_ms, updated_at = excluded.updated_at
