-- A new backfill pass (the exclusion constraint allows one open pass per entity). Key bounds as
-- text, key_type the key's base type (migration_engine/keys.py).
INSERT INTO "{schema}".backfill_runs
    (entity, key_column, key_type, key_min, key_max, rows_total, parallelism, settings, dag_id, dag_run_id)
VALUES (@entity, @key_column, @key_type, @key_min::text, @key_max::text, @rows_total, @parallelism, @settings::jsonb, @dag_id,
        @dag_run_id)
RETURNING id;
