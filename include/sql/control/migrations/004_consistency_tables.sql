-- Migration 004: consistency-run history (phases 3-4 and the hourly run). Phase 5 reads
-- consistency_runs ("last full consistency run passed within N") through
-- migration_engine.consistency.store.last_consistency_run.
-- Runs in one transaction through the DDL executor (ddl.lock_timeout / ddl.statement_timeout set
-- first, lock timeouts retried); idempotent, so an unversioned control schema is adopted in place.
-- The two indexes are built in the same transaction as their new, empty tables (nothing to wait
-- for, no writer to block); where the tables already existed they already have them (no-ops).
-- Never edit once shipped: add a new numbered file instead.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout, require-concurrent-index-creation

CREATE TABLE IF NOT EXISTS "{schema}".consistency_runs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('diff', 'full')),
    status text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'passed', 'failed', 'error')),
    dag_id text,
    run_id text,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    failed_checks text [] NOT NULL DEFAULT '{}',
    summary jsonb NOT NULL DEFAULT '{}',
    data_docs text
);

-- One row per check (entity diff, reference, count parity, GX suite) per run.
CREATE TABLE IF NOT EXISTS "{schema}".consistency_check_results (
    run_pk bigint NOT NULL REFERENCES "{schema}".consistency_runs (id) ON DELETE CASCADE,
    check_name text NOT NULL,
    check_kind text NOT NULL CHECK (check_kind IN ('entity', 'reference', 'count', 'suite')),
    status text NOT NULL CHECK (status IN ('passed', 'failed', 'error')),
    old_count bigint,
    new_count bigint,
    counts jsonb NOT NULL DEFAULT '{}',
    sample jsonb NOT NULL DEFAULT '{}',
    message text NOT NULL DEFAULT '',
    duration_s double precision,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_pk, check_name)
);

-- The offending keys behind a failed check (capped per check and kind; counts are exact).
CREATE TABLE IF NOT EXISTS "{schema}".consistency_findings (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_pk bigint NOT NULL REFERENCES "{schema}".consistency_runs (id) ON DELETE CASCADE,
    check_name text NOT NULL,
    kind text NOT NULL CHECK (
        kind IN (
            'missing_in_new', 'missing_in_old', 'changed', 'unlinked_in_new', 'orphan', 'invalid_value',
            'null_value', 'error'
        )
    ),
    entity_key text NOT NULL,
    columns text [] NOT NULL DEFAULT '{}',
    detail jsonb NOT NULL DEFAULT '{}'
);

CREATE INDEX IF NOT EXISTS consistency_runs_kind_time
ON "{schema}".consistency_runs (kind, finished_at DESC);
CREATE INDEX IF NOT EXISTS consistency_findings_run
ON "{schema}".consistency_findings (run_pk, check_name, kind);
