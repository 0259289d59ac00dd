-- Indexes the dashboards and gates read by. The control tables are small and new when this first
-- runs; CONCURRENTLY keeps re-runs on a busy, grown control schema from blocking the app's writers.
SET lock_timeout = '5s';
SET statement_timeout = '5min';
CREATE INDEX CONCURRENTLY IF NOT EXISTS gate_results_gate_time ON "{schema}".gate_results (gate, evaluated_at DESC);
CREATE INDEX CONCURRENTLY IF NOT EXISTS audit_ledger_time ON "{schema}".audit_ledger (at DESC);
CREATE INDEX CONCURRENTLY IF NOT EXISTS dual_write_stats_bucket ON "{schema}".dual_write_stats (bucket);
CREATE INDEX CONCURRENTLY IF NOT EXISTS path_stats_bucket ON "{schema}".path_stats (bucket);
CREATE INDEX CONCURRENTLY IF NOT EXISTS shadow_read_stats_bucket ON "{schema}".shadow_read_stats (bucket);
CREATE INDEX CONCURRENTLY IF NOT EXISTS shadow_read_mismatches_time ON "{schema}".shadow_read_mismatches (observed_at DESC);
