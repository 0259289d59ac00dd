-- Migration 008: database performance history, written by the migration_db_performance_sampler
-- DAG (migration_engine/perf): one row per database per sample with the database-wide figures,
-- one row per table per sample with its latency, size and hit rates, and the last cumulative
-- pg_stat_statements counters per statement (so the next sample can take the difference).
-- New tables only, so the indexes are built in the same transaction (nothing else can use an
-- empty table that does not exist yet: no lock on anything the application touches).
-- Runs in one transaction through the DDL executor (ddl.lock_timeout / ddl.statement_timeout set
-- first, lock timeouts retried); idempotent. Never edit once shipped: add a new numbered file instead.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout, require-concurrent-index-creation

CREATE TABLE IF NOT EXISTS "{schema}".perf_samples (
    db text NOT NULL CHECK (db IN ('legacy', 'new')),
    sampled_at timestamptz NOT NULL,
    database_name text NOT NULL,
    server_version_num bigint NOT NULL,
    -- database-wide figures (connections, max_connections, replication lag, size, hit rates, I/O,
    -- backup-dir disk): a jsonb object because what a server can report depends on its version
    figures jsonb NOT NULL DEFAULT '{}',
    -- section -> why it could not be read ("not available: ..."), shown as such on the page
    unavailable jsonb NOT NULL DEFAULT '{}',
    latency_source text NOT NULL CHECK (latency_source IN ('pg_stat_statements', 'app_stats', 'none')),
    dag_id text,
    run_id text,
    PRIMARY KEY (db, sampled_at)
);

CREATE INDEX IF NOT EXISTS perf_samples_time ON "{schema}".perf_samples (sampled_at);
CREATE INDEX IF NOT EXISTS perf_samples_run ON "{schema}".perf_samples (run_id) WHERE run_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS "{schema}".perf_table_samples (
    db text NOT NULL,
    sampled_at timestamptz NOT NULL,
    table_name text NOT NULL,  -- schema.table
    -- latency of the statements touching the table in the sample's interval (milliseconds);
    -- estimated from pg_stat_statements or, from the app's stats contract, its reported p95
    calls bigint,
    mean_ms double precision,
    p50_ms double precision,
    p95_ms double precision,
    p99_ms double precision,
    statements bigint,
    total_bytes bigint,
    live_rows bigint,
    seq_scans bigint,
    index_scans bigint,
    buffer_hit_pct double precision,
    index_hit_pct double precision,
    PRIMARY KEY (db, sampled_at, table_name),
    FOREIGN KEY (db, sampled_at) REFERENCES "{schema}".perf_samples (db, sampled_at) ON DELETE CASCADE
);

-- The page reads the chart window of every table by time.
CREATE INDEX IF NOT EXISTS perf_table_samples_time ON "{schema}".perf_table_samples (sampled_at);

CREATE TABLE IF NOT EXISTS "{schema}".perf_statement_counters (
    db text NOT NULL CHECK (db IN ('legacy', 'new')),
    dbid oid NOT NULL,
    userid oid NOT NULL,
    queryid bigint NOT NULL,
    calls bigint NOT NULL,
    total_exec_ms double precision NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (db, dbid, userid, queryid)
);
