-- The most recent finished consistency run of the given kinds (phase 5's pre-cutover check).
SELECT id, kind, status, dag_id, run_id, started_at, finished_at, failed_checks, summary, data_docs
FROM "{schema}".consistency_runs
WHERE kind = ANY(@kinds) AND finished_at IS NOT NULL
ORDER BY finished_at DESC
LIMIT 1;
