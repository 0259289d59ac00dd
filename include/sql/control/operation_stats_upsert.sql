-- The stats contract: one minute of a named operation from one application instance (additive).
INSERT INTO "{schema}".operation_stats AS s (operation, bucket, instance, requests, errors, p95_latency_ms)
VALUES (@operation, @bucket, @instance, @requests, @errors, @p95_latency_ms)
ON CONFLICT (operation, bucket, instance) DO UPDATE
SET requests = s.requests + excluded.requests,
    errors = s.errors + excluded.errors,
    p95_latency_ms = greatest(s.p95_latency_ms, excluded.p95_latency_ms);
