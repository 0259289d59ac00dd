-- The latest performance sample of each database, with its tables.
SELECT s.db, s.sampled_at, s.figures, t.table_name, t.p95_ms, t.calls
FROM "{schema}".perf_samples AS s
LEFT JOIN "{schema}".perf_table_samples AS t ON t.db = s.db AND t.sampled_at = s.sampled_at
WHERE s.sampled_at = (SELECT max(sampled_at) FROM "{schema}".perf_samples AS x WHERE x.db = s.db)
ORDER BY s.db, t.table_name
