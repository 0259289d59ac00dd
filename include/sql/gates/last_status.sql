-- The latest recorded status of one gate task in one DAG run: a gate trigger restarted by the
-- triggerer resumes its alert state from here instead of paging again for a status it already
-- reported. The gate monitor stores the task id in the figures.
SELECT status, evaluated_at
FROM "{schema}".gate_results
WHERE gate = @gate
  AND dag_id IS NOT DISTINCT FROM @dag_id
  AND run_id IS NOT DISTINCT FROM @run_id
  AND figures ->> 'task_id' IS NOT DISTINCT FROM @task_id
ORDER BY evaluated_at DESC, id DESC
LIMIT 1;
