INSERT INTO "{schema}".path_stats AS s (entity, bucket, operation, path, instance, requests, errors, p95_latency_ms)
VALUES (@entity, @bucket, @operation, @path, @instance, @requests, @errors, @p95_latency_ms)
ON CONFLICT (entity, bucket, operation, path, instance) DO UPDATE
SET requests = s.requests + excluded.requests,
    errors = s.errors + excluded.errors,
    p95_latency_ms = greatest(s.p95_latency_ms, excluded.p95_latency_ms);
