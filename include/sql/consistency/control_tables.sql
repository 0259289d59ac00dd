-- Consistency-run history (phases 3-4 and the hourly run), created idempotently in the control
-- schema by migration_engine.consistency.store.ensure_tables. Phase 5 reads consistency_runs
-- ("last full consistency run passed within N") through store.last_consistency_run.
-- New, small tables in our own schema: the indexes are created in the same transaction as their
-- table on first run, and are no-ops afterwards.
-- squawk-ignore-file require-concurrent-index-creation
SET lock_timeout = '5s';
SET statement_timeout = '5min';

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
