-- Dashboard: requests, errors and p95 latency per operation and path, for the rolling window and
-- its most recent part (the cohort an operator compares during read and write cutover).
SELECT operation,
       path,
       sum(requests)::bigint AS requests,
       sum(errors)::bigint AS errors,
       coalesce(sum(requests) FILTER (WHERE bucket >= @recent_start), 0)::bigint AS recent_requests,
       coalesce(sum(errors) FILTER (WHERE bucket >= @recent_start), 0)::bigint AS recent_errors,
       max(p95_latency_ms) FILTER (WHERE bucket >= @recent_start) AS recent_p95_latency_ms
FROM "{schema}".path_stats
WHERE bucket >= @window_start AND bucket < @window_end
GROUP BY operation, path
ORDER BY operation, path;
