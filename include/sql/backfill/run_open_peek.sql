-- The open (unfinished) backfill pass of an entity, read without locking: plans and dry runs look,
-- they do not claim it (run_open_get.sql locks it when the pass is recorded).
-- NULL row when the backfill control tables do not exist yet (nothing was ever planned).
SELECT id, entity, status, key_column, key_min, key_max, rows_total, parallelism, settings, dag_id,
       dag_run_id, created_at, key_type
FROM "{schema}".backfill_runs
WHERE entity = @entity AND status = 'running';
