-- A new backfill pass (the partial unique index allows one open pass per entity).
INSERT INTO "{schema}".backfill_runs
    (entity, key_column, key_min, key_max, rows_total, parallelism, settings, dag_id, dag_run_id)
VALUES (@entity, @key_column, @key_min, @key_max, @rows_total, @parallelism, @settings::jsonb, @dag_id,
        @dag_run_id)
RETURNING id;
