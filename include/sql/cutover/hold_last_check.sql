-- The last recorded check of one read-rollout step's hold (since the hold started): a trigger
-- re-created by the triggerer, or a retried task, resumes its counters (checks, passed checks,
-- inconclusive streak) from it instead of starting from zero.
SELECT figures, evaluated_at
FROM "{schema}".gate_results
WHERE gate = 'read_error_rate'
  AND dag_id IS NOT DISTINCT FROM @dag_id
  AND run_id IS NOT DISTINCT FROM @run_id
  AND figures ->> 'task_id' IS NOT DISTINCT FROM @task_id
  AND figures ->> 'step_pct' = @step_pct
  AND evaluated_at >= @since
ORDER BY evaluated_at DESC, id DESC
LIMIT 1;
