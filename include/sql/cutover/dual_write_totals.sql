-- Rollback scenario 1: cumulative dual-write attempts/failures since @since for the given
-- entities. Two snapshots that agree prove the application stopped dual-writing in between.
SELECT coalesce(sum(s.attempts), 0)::bigint AS attempts, coalesce(sum(s.failures), 0)::bigint AS failures
FROM "{schema}".dual_write_stats AS s
WHERE s.entity = ANY(@entities)
  AND s.bucket >= @since::timestamptz;
