-- perf.retention: forget the counters of statements no sample has seen for that long.
DELETE FROM "{schema}".perf_statement_counters
WHERE updated_at < @sampled_at::timestamptz - make_interval(secs => @retention_seconds)
