-- Shadow-read gate: reads compared and mismatches per cohort of one entity over [@window_start,
-- @window_end) (the breakdown next to the window total from gates/window_summary.sql).
SELECT s.cohort, sum(s.reads_compared) AS reads, sum(s.mismatches) AS mismatches
FROM "{schema}".shadow_read_stats AS s
WHERE s.entity = @entity
  AND s.bucket >= @window_start::timestamptz
  AND s.bucket < @window_end::timestamptz
GROUP BY s.cohort
ORDER BY s.cohort;
