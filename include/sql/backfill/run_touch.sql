-- A resumed pass remembers the Airflow run that resumed it last.
UPDATE "{schema}".backfill_runs
SET dag_id = @dag_id, dag_run_id = @dag_run_id, updated_at = now()
WHERE id = @run_id;
