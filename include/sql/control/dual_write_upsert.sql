-- Application-side: add one minute's dual-write counts (several flushes per minute add up).
INSERT INTO "{schema}".dual_write_stats AS s (entity, bucket, instance, attempts, failures, p95_latency_ms)
VALUES (@entity, @bucket, @instance, @attempts, @failures, @p95_latency_ms)
ON CONFLICT (entity, bucket, instance) DO UPDATE
SET attempts = s.attempts + excluded.attempts,
    failures = s.failures + excluded.failures,
    p95_latency_ms = greatest(s.p95_latency_ms, excluded.p95_latency_ms);
