INSERT INTO "{schema}".shadow_read_mismatches (entity, entity_key, cohort, diffs)
VALUES (@entity, @entity_key, @cohort, @diffs::jsonb);
