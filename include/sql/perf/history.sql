-- The samples of the chart window, newest first (bounded: when the window holds more, the newest
-- are kept; the page puts them back in time order).
SELECT db, sampled_at, database_name, server_version_num, figures, unavailable, latency_source
FROM "{schema}".perf_samples
WHERE sampled_at >= @window_start
ORDER BY sampled_at DESC, db
LIMIT @max_rows
