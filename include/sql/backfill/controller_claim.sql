-- A range claims the pass's baseline measurement: the first one inserts the row; a claim whose
-- measurement never finished (its worker died) is taken over after @stale_seconds. A row back = measure.
INSERT INTO "{schema}".backfill_controller AS c (run_id, baseline_by, baseline_started_at)
VALUES (@run_id, @range_no, clock_timestamp())
ON CONFLICT (run_id) DO UPDATE
SET baseline_by = excluded.baseline_by, baseline_started_at = excluded.baseline_started_at,
    updated_at = clock_timestamp()
WHERE c.baseline IS NULL
  AND c.baseline_started_at < clock_timestamp() - make_interval(secs => @stale_seconds)
RETURNING c.baseline_by;
