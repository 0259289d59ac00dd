-- Migration 001: the control tables - the contract between this project and the application.
-- Applied by migration_engine.control_schema.upgrade (the migration_setup DAG) in one transaction,
-- recorded in schema_version. Never edit it once shipped: add a new numbered file instead.
-- Every statement is idempotent (IF NOT EXISTS / OR REPLACE / ON CONFLICT DO NOTHING) so that a
-- control schema made before versioned migrations (same objects, no schema_version) is adopted in
-- place without touching a row. "{schema}" is the config's control_schema.
-- The runner sends every statement through the DDL executor, which sets ddl.lock_timeout and
-- ddl.statement_timeout first (and retries lock timeouts), so the file does not SET them.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
CREATE SCHEMA IF NOT EXISTS "{schema}";

-- Feature flags the application reads (cache them for a few seconds; never read per request).
CREATE TABLE IF NOT EXISTS "{schema}".feature_flags (
    name text PRIMARY KEY,
    value jsonb NOT NULL,
    description text NOT NULL DEFAULT '',
    updated_at timestamptz NOT NULL DEFAULT now(),
    updated_by text NOT NULL DEFAULT 'bootstrap',
    CONSTRAINT feature_flags_value_type CHECK (
        CASE
            WHEN name IN ('read_new_pct', 'shadow_read_pct')
                THEN jsonb_typeof(value) = 'number' AND (value #>> '{}')::numeric BETWEEN 0 AND 100
            ELSE jsonb_typeof(value) = 'boolean'
        END
    )
);

INSERT INTO "{schema}".feature_flags (name, value, description) VALUES
    ('dual_write_enabled', 'false', 'Write every change to the new tables as well as the old ones'),
    ('read_new_pct', '0', 'Percent of reads served from the new tables (0-100)'),
    ('shadow_read_pct', '0', 'Percent of reads also read from the new side and compared (0-100)'),
    ('write_to_new', 'false', 'The new tables are the write path (write cutover done)'),
    ('keep_old_sync', 'false', 'After write cutover, keep writing the old tables too'),
    ('maintenance_mode', 'false', 'Application refuses writes (rollback scenario 3)')
ON CONFLICT (name) DO NOTHING;

-- Per-minute dual-write outcome, one row per (entity, minute, application instance).
CREATE TABLE IF NOT EXISTS "{schema}".dual_write_stats (
    entity text NOT NULL,
    bucket timestamptz NOT NULL,
    instance text NOT NULL DEFAULT 'default',
    attempts bigint NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    failures bigint NOT NULL DEFAULT 0 CHECK (failures >= 0),
    p95_latency_ms double precision,
    PRIMARY KEY (entity, bucket, instance),
    CHECK (failures <= attempts)
);

-- Per-minute shadow-read comparisons, by cohort (e.g. read_new_pct bucket or tenant tier).
CREATE TABLE IF NOT EXISTS "{schema}".shadow_read_stats (
    entity text NOT NULL,
    bucket timestamptz NOT NULL,
    cohort text NOT NULL DEFAULT 'all',
    instance text NOT NULL DEFAULT 'default',
    reads_compared bigint NOT NULL DEFAULT 0 CHECK (reads_compared >= 0),
    mismatches bigint NOT NULL DEFAULT 0 CHECK (mismatches >= 0),
    PRIMARY KEY (entity, bucket, cohort, instance),
    CHECK (mismatches <= reads_compared)
);

-- A sample of shadow-read mismatches with the differing fields, for operators.
CREATE TABLE IF NOT EXISTS "{schema}".shadow_read_mismatches (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    entity text NOT NULL,
    entity_key text NOT NULL,
    cohort text NOT NULL DEFAULT 'all',
    diffs jsonb NOT NULL,
    observed_at timestamptz NOT NULL DEFAULT now()
);

-- Per-minute request and error counts by operation and path (old tables vs new tables).
CREATE TABLE IF NOT EXISTS "{schema}".path_stats (
    entity text NOT NULL,
    bucket timestamptz NOT NULL,
    operation text NOT NULL CHECK (operation IN ('read', 'write')),
    path text NOT NULL CHECK (path IN ('old', 'new')),
    instance text NOT NULL DEFAULT 'default',
    requests bigint NOT NULL DEFAULT 0 CHECK (requests >= 0),
    errors bigint NOT NULL DEFAULT 0 CHECK (errors >= 0),
    p95_latency_ms double precision,
    PRIMARY KEY (entity, bucket, operation, path, instance),
    CHECK (errors <= requests)
);

-- Every evaluation of every gate, with the figures it saw and why it decided.
CREATE TABLE IF NOT EXISTS "{schema}".gate_results (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    gate text NOT NULL,
    status text NOT NULL CHECK (status IN ('passed', 'waiting', 'warning', 'critical', 'failed')),
    figures jsonb NOT NULL DEFAULT '{}',
    reason text NOT NULL DEFAULT '',
    dag_id text,
    run_id text,
    evaluated_at timestamptz NOT NULL DEFAULT now()
);

-- Append-only ledger: who did what, when and why (flag changes, phase actions, approvals).
CREATE TABLE IF NOT EXISTS "{schema}".audit_ledger (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor text NOT NULL,
    action text NOT NULL,
    target text NOT NULL DEFAULT '',
    details jsonb NOT NULL DEFAULT '{}',
    reason text NOT NULL DEFAULT ''
);

CREATE OR REPLACE FUNCTION "{schema}".audit_ledger_is_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_ledger is append-only: % is not allowed', tg_op
        USING ERRCODE = 'insufficient_privilege';
END
$$;

-- Drop-and-create keeps the file re-runnable (CREATE TRIGGER has no IF NOT EXISTS); the file runs
-- as one transaction, so the ledger is never without its triggers.
DROP TRIGGER IF EXISTS audit_ledger_append_only ON "{schema}".audit_ledger;
CREATE TRIGGER audit_ledger_append_only
    BEFORE UPDATE OR DELETE ON "{schema}".audit_ledger
    FOR EACH ROW EXECUTE FUNCTION "{schema}".audit_ledger_is_append_only();

DROP TRIGGER IF EXISTS audit_ledger_no_truncate ON "{schema}".audit_ledger;
CREATE TRIGGER audit_ledger_no_truncate
    BEFORE TRUNCATE ON "{schema}".audit_ledger
    FOR EACH STATEMENT EXECUTE FUNCTION "{schema}".audit_ledger_is_append_only();

-- Alert state for deduplication: one open alert per key, updated instead of re-paging.
CREATE TABLE IF NOT EXISTS "{schema}".alerts (
    dedup_key text PRIMARY KEY,
    severity text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    status text NOT NULL CHECK (status IN ('open', 'resolved')),
    channel text,
    slack_ts text,
    title text NOT NULL DEFAULT '',
    last_text text NOT NULL DEFAULT '',
    occurrences bigint NOT NULL DEFAULT 1,
    delivery_error text,
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz
);

-- Run state of each migration step (plan / apply / verify / revert), so re-runs can skip work.
CREATE TABLE IF NOT EXISTS "{schema}".step_state (
    step_id text PRIMARY KEY,
    phase text NOT NULL,
    status text NOT NULL CHECK (status IN ('pending', 'applied', 'verified', 'reverted', 'failed')),
    last_sql text NOT NULL DEFAULT '',
    details jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now()
);
