-- The application's own latency figures (stats contract, per entity and path) over a window:
-- the true p95 the application measured (merged as the maximum across minutes and instances).
SELECT entity, operation, path, sum(requests)::bigint AS requests, sum(errors)::bigint AS errors,
       max(p95_latency_ms) AS p95_ms
FROM "{schema}".path_stats
WHERE bucket >= @window_start AND bucket < @window_end
GROUP BY entity, operation, path
ORDER BY entity, operation, path
