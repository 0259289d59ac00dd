-- Drop run history older than the retention window (findings and results cascade).
DELETE FROM "{schema}".consistency_runs
WHERE started_at < now() - make_interval(secs => @retention_seconds);
