-- The samples a DAG run already recorded (a retried task does not sample twice).
SELECT db, sampled_at
FROM "{schema}".perf_samples
WHERE dag_id = @dag_id AND run_id = @run_id
ORDER BY db
