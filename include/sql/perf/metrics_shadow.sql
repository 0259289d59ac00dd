-- Shadow-read comparisons and mismatches per entity over the metrics window.
SELECT entity, sum(reads_compared)::bigint AS reads_compared, sum(mismatches)::bigint AS mismatches
FROM "{schema}".shadow_read_stats
WHERE bucket >= @window_start AND bucket < @window_end
GROUP BY entity
ORDER BY entity
