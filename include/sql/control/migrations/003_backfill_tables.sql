-- Migration 003: backfill run state. One `backfill_runs` row per pass over an entity; its key
-- space is split into non-overlapping `backfill_ranges` (key_lo, key_hi], each with a high-water
-- mark `last_key` committed after every batch, so a killed worker resumes where it stopped.
-- Runs in one transaction through the DDL executor (ddl.lock_timeout / ddl.statement_timeout set
-- first, lock timeouts retried); idempotent, so an unversioned control schema is adopted in place.
-- Never edit once shipped: add a new numbered file instead.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout

CREATE TABLE IF NOT EXISTS "{schema}".backfill_runs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity text NOT NULL,
    status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'cancelled')),
    key_column text NOT NULL,
    key_min bigint,
    key_max bigint,
    rows_total bigint NOT NULL DEFAULT 0,
    parallelism bigint NOT NULL CHECK (parallelism >= 1),
    settings jsonb NOT NULL DEFAULT '{}',
    dag_id text,
    dag_run_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    -- At most one open pass per entity: a second plan resumes it instead of racing it. (A constraint
    -- of the new table, so no CREATE INDEX has to wait for the legacy database's old transactions.)
    CONSTRAINT backfill_runs_one_open EXCLUDE USING btree (entity WITH =) WHERE (status = 'running')
);

CREATE TABLE IF NOT EXISTS "{schema}".backfill_ranges (
    run_id bigint NOT NULL REFERENCES "{schema}".backfill_runs (id),
    range_no bigint NOT NULL,
    key_lo bigint NOT NULL,
    key_hi bigint NOT NULL,
    last_key bigint NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'paused', 'done', 'failed')),
    rows_total bigint NOT NULL DEFAULT 0,
    rows_read bigint NOT NULL DEFAULT 0,
    rows_written bigint NOT NULL DEFAULT 0,
    rows_deleted bigint NOT NULL DEFAULT 0,
    batches bigint NOT NULL DEFAULT 0,
    retries bigint NOT NULL DEFAULT 0,
    batch_size bigint,
    rows_per_second double precision,
    eta_seconds double precision,
    pause_reason text,
    paused_seconds double precision NOT NULL DEFAULT 0,
    worker text,
    error text,
    started_at timestamptz,
    heartbeat_at timestamptz,
    finished_at timestamptz,
    PRIMARY KEY (run_id, range_no),
    CHECK (key_lo < key_hi),
    CHECK (last_key BETWEEN key_lo AND key_hi)
);

-- Called by the batch SELECT for a value the config's map does not cover: stop with a clear error
-- instead of writing NULL or the untranslated value into the new table.
CREATE OR REPLACE FUNCTION "{schema}".backfill_unmapped(column_name text, old_value text) RETURNS text
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'backfill: value % of column % is not in the column''s map in the migration config',
        quote_literal(old_value), column_name
        USING ERRCODE = 'data_exception',
              HINT = 'add the value to the map (include/migration.yaml) or narrow the entity scope';
END
$$;
