-- Dashboard: dual-write outcome per UTC hour over the window (all entities and instances summed).
-- The range predicate on bucket uses dual_write_stats_bucket; at most one row per hour comes back.
SELECT date_trunc('hour', bucket, 'UTC') AS hour,
       sum(attempts)::bigint AS attempts,
       sum(failures)::bigint AS failures,
       max(p95_latency_ms) AS p95_latency_ms
FROM "{schema}".dual_write_stats
WHERE bucket >= @window_start AND bucket < @window_end
GROUP BY 1
ORDER BY 1;
