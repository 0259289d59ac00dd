-- Migration 002: indexes the dashboards and gates read by. CONCURRENTLY keeps a build on a busy,
-- grown control schema from blocking the application's writers; so this file cannot run in a
-- transaction: the runner sends each statement on its own (autocommit) through the DDL executor,
-- with ddl.lock_timeout / ddl.statement_timeout, retrying lock timeouts (a build waits for the
-- legacy database's older transactions) and dropping an INVALID leftover of an interrupted build
-- before it retries. IF NOT EXISTS: the indexes of a control schema made before versioned
-- migrations are adopted as they are. Never edit once shipped: add a new numbered file instead.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
CREATE INDEX CONCURRENTLY IF NOT EXISTS gate_results_gate_time ON "{schema}".gate_results (gate, evaluated_at DESC);
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_ledger_time ON "{schema}".audit_ledger (at DESC);
CREATE INDEX CONCURRENTLY IF NOT EXISTS dual_write_stats_bucket ON "{schema}".dual_write_stats (bucket);
CREATE INDEX CONCURRENTLY IF NOT EXISTS path_stats_bucket ON "{schema}".path_stats (bucket);
CREATE INDEX CONCURRENTLY IF NOT EXISTS shadow_read_stats_bucket ON "{schema}".shadow_read_stats (bucket);
CREATE INDEX CONCURRENTLY IF NOT EXISTS shadow_read_mismatches_time ON "{schema}".shadow_read_mismatches (observed_at DESC);
