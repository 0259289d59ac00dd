-- Read rollout / rollbacks: cumulative request and error counts per path (old/new) of one
-- operation (read/write) for the given entities, summed over every minute bucket since @since.
-- The stats are additive upserts, so the difference between two of these snapshots is exactly
-- what the application reported between them - whatever the check interval, even under a minute.
SELECT s.path, coalesce(sum(s.requests), 0)::bigint AS requests, coalesce(sum(s.errors), 0)::bigint AS errors
FROM "{schema}".path_stats AS s
WHERE s.operation = @operation
  AND s.entity = ANY(@entities)
  AND s.bucket >= @since::timestamptz
GROUP BY s.path;
