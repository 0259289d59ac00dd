-- perf.retention: samples older than this go (their table rows with them: ON DELETE CASCADE).
DELETE FROM "{schema}".perf_samples
WHERE sampled_at < @sampled_at::timestamptz - make_interval(secs => @retention_seconds)
