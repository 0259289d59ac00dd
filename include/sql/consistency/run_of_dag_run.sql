-- The latest consistency run (finished or not) of one Airflow DAG run: a re-run of a task of that
-- DAG run continues this run instead of starting another (the run step is idempotent).
SELECT id, kind, status, dag_id, run_id, started_at, finished_at, failed_checks, summary, data_docs
FROM "{schema}".consistency_runs
WHERE dag_id = @dag_id AND run_id = @run_id AND kind = @kind
ORDER BY id DESC
LIMIT 1;
