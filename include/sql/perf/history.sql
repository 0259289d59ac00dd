-- Every sample of the chart window, oldest first (bounded: one row per database per sample).
SELECT db, sampled_at, database_name, server_version_num, figures, unavailable, latency_source
FROM "{schema}".perf_samples
WHERE sampled_at >= @window_start
ORDER BY sampled_at, db
LIMIT @max_rows
