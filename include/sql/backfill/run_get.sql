SELECT id, entity, status, key_column, key_min, key_max, rows_total, parallelism, settings, dag_id,
       dag_run_id, created_at, key_type
FROM "{schema}".backfill_runs
WHERE id = @run_id;
