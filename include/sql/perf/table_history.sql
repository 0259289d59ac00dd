-- Per-table latency and hit rates over the chart window, newest first (bounded like history.sql).
SELECT db, sampled_at, table_name, calls, mean_ms, p50_ms, p95_ms, p99_ms, statements, total_bytes, live_rows,
       seq_scans, index_scans, buffer_hit_pct, index_hit_pct
FROM "{schema}".perf_table_samples
WHERE sampled_at >= @window_start
ORDER BY sampled_at DESC, db, table_name
LIMIT @max_rows
