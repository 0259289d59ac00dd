-- Shadow-read gate: the most recent stored mismatch examples of one entity in the window, with
-- the fields that differed (written by the application through migration_engine.appclient).
SELECT m.entity_key, m.cohort, m.diffs, m.observed_at
FROM "{schema}".shadow_read_mismatches AS m
WHERE m.entity = @entity
  AND m.observed_at >= @window_start::timestamptz
  AND m.observed_at < @window_end::timestamptz
ORDER BY m.observed_at DESC, m.id DESC
LIMIT @row_limit;
