-- Dashboard: the latest sampled shadow-read mismatches (shadow_read_mismatches_time index).
SELECT id, entity, entity_key, cohort, diffs, observed_at
FROM "{schema}".shadow_read_mismatches
ORDER BY observed_at DESC
LIMIT @max_rows;
