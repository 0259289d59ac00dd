-- Dashboard: requests and errors per UTC hour, operation and path (old tables vs new tables).
-- At most 24 x 2 x 2 rows for a day.
SELECT date_trunc('hour', bucket, 'UTC') AS hour,
       operation,
       path,
       sum(requests)::bigint AS requests,
       sum(errors)::bigint AS errors
FROM "{schema}".path_stats
WHERE bucket >= @window_start AND bucket < @window_end
GROUP BY 1, operation, path
ORDER BY 1, operation, path;
