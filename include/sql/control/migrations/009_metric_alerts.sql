-- Migration 009: named application operations (the stats contract's metric alerts) and the
-- conditions an alert reported, so an alert can be resolved when they clear.
-- Runs in one transaction through the DDL executor (ddl.lock_timeout / ddl.statement_timeout set
-- first, lock timeouts retried); idempotent. Never edit once shipped: add a new numbered file instead.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout

-- Per-minute stats of named operations the application reports (appclient.record_operation):
-- invoice_state_transition, payment_processing, cross_db_query, ... Additive upserts like
-- path_stats: several instances add up; p95 takes the maximum (conservative).
CREATE TABLE IF NOT EXISTS "{schema}".operation_stats (
    operation text NOT NULL CHECK (operation ~ '^[a-z][a-z0-9_.]{0,62}$'),
    bucket timestamptz NOT NULL,
    instance text NOT NULL DEFAULT 'default',
    requests bigint NOT NULL DEFAULT 0 CHECK (requests >= 0),
    errors bigint NOT NULL DEFAULT 0 CHECK (errors >= 0),
    p95_latency_ms double precision,
    PRIMARY KEY (operation, bucket, instance),
    CHECK (errors <= requests)
);

-- The gates / metrics an open alert reported (e.g. ["cutover_dual_write", "pre_cutover_backup"]):
-- a later passing evaluation of all of them resolves it (gates.runner, metric_alerts).
ALTER TABLE "{schema}".alerts ADD COLUMN IF NOT EXISTS conditions jsonb;

-- Latency histograms of served reads/writes per path (counts per fixed bucket, bounds in
-- appclient.LATENCY_BOUNDS_MS): additive like the counters, so the difference of two snapshots is
-- the exact latency distribution of the interval between them - the read rollout judges an
-- interval's p95 from it (a per-minute p95 merged by maximum cannot be split into intervals).
ALTER TABLE "{schema}".path_stats ADD COLUMN IF NOT EXISTS latency_histogram bigint [];
