-- Dashboard: per-entity dual-write totals for the rolling window and its most recent part.
SELECT entity,
       sum(attempts)::bigint AS attempts,
       sum(failures)::bigint AS failures,
       coalesce(sum(attempts) FILTER (WHERE bucket >= @recent_start), 0)::bigint AS recent_attempts,
       coalesce(sum(failures) FILTER (WHERE bucket >= @recent_start), 0)::bigint AS recent_failures,
       max(p95_latency_ms) FILTER (WHERE bucket >= @recent_start) AS recent_p95_latency_ms,
       max(bucket) AS last_bucket
FROM "{schema}".dual_write_stats
WHERE bucket >= @window_start AND bucket < @window_end
GROUP BY entity
ORDER BY entity;
