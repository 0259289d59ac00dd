-- Dashboard: shadow-read comparisons per UTC hour (all entities, cohorts and instances summed).
SELECT date_trunc('hour', bucket, 'UTC') AS hour,
       sum(reads_compared)::bigint AS reads_compared,
       sum(mismatches)::bigint AS mismatches
FROM "{schema}".shadow_read_stats
WHERE bucket >= @window_start AND bucket < @window_end
GROUP BY 1
ORDER BY 1;
