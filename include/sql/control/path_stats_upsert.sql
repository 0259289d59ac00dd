INSERT INTO "{schema}".path_stats AS s (
    entity, bucket, operation, path, instance, requests, errors, p95_latency_ms, latency_histogram
)
VALUES (@entity, @bucket, @operation, @path, @instance, @requests, @errors, @p95_latency_ms, @latency_histogram)
ON CONFLICT (entity, bucket, operation, path, instance) DO UPDATE
SET requests = s.requests + excluded.requests,
    errors = s.errors + excluded.errors,
    p95_latency_ms = greatest(s.p95_latency_ms, excluded.p95_latency_ms),
    -- element-wise sum (histograms of the same bounds); either side may be NULL (an older client)
    latency_histogram = CASE
        WHEN s.latency_histogram IS NULL THEN excluded.latency_histogram
        WHEN excluded.latency_histogram IS NULL THEN s.latency_histogram
        ELSE ARRAY(
            SELECT coalesce(u.a, 0) + coalesce(u.b, 0)
            FROM unnest(s.latency_histogram, excluded.latency_histogram) WITH ORDINALITY AS u (a, b, i)
            ORDER BY u.i
        )
    END;
