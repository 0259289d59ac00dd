INSERT INTO "{schema}".shadow_read_stats AS s (entity, bucket, cohort, instance, reads_compared, mismatches)
VALUES (@entity, @bucket, @cohort, @instance, @reads_compared, @mismatches)
ON CONFLICT (entity, bucket, cohort, instance) DO UPDATE
SET reads_compared = s.reads_compared + excluded.reads_compared,
    mismatches = s.mismatches + excluded.mismatches;
