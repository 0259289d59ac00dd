-- Dashboard: dual-write outcome per minute over a short recent window (at most one row per minute).
SELECT date_trunc('minute', bucket) AS minute,
       sum(attempts)::bigint AS attempts,
       sum(failures)::bigint AS failures,
       max(p95_latency_ms) AS p95_latency_ms
FROM "{schema}".dual_write_stats
WHERE bucket >= @window_start AND bucket < @window_end
GROUP BY 1
ORDER BY 1;
