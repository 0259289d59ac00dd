-- The largest user tables of this database (the control schema excluded): size, rows, scans and
-- buffer / index hit counters (cumulative since the statistics were reset).
SELECT t.schemaname || '.' || t.relname AS table_name,
       t.schemaname AS schema_name,
       t.relname AS relname,
       pg_total_relation_size(t.relid) AS total_bytes,
       t.n_live_tup AS live_rows,
       t.seq_scan AS seq_scans,
       t.idx_scan AS index_scans,
       io.heap_blks_hit, io.heap_blks_read, io.idx_blks_hit, io.idx_blks_read
FROM pg_stat_user_tables AS t
JOIN pg_statio_user_tables AS io ON io.relid = t.relid
WHERE t.schemaname <> @control_schema
ORDER BY pg_total_relation_size(t.relid) DESC, table_name
LIMIT @max_tables
