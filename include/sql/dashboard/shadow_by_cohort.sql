-- Dashboard: shadow-read totals per entity and cohort over the rolling window.
SELECT entity,
       cohort,
       sum(reads_compared)::bigint AS reads_compared,
       sum(mismatches)::bigint AS mismatches,
       max(bucket) AS last_bucket
FROM "{schema}".shadow_read_stats
WHERE bucket >= @window_start AND bucket < @window_end
GROUP BY entity, cohort
ORDER BY entity, cohort;
