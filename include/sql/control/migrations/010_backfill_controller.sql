-- Migration 010: one latency-budget controller per backfill pass. Every range of the pass (threads of
-- one CLI process or separate Airflow task processes) reads the pass's decided rate from this row and
-- paces at its share of it; a decision is made at most once per decision interval per pass, by whichever
-- range gets there first (compare-and-set on `decisions`). The baseline is measured once per pass before
-- the copy and reused by every range, also a retried or resumed one.
-- Runs in one transaction through the DDL executor (ddl.lock_timeout / ddl.statement_timeout set
-- first, lock timeouts retried); idempotent. Never edit once shipped: add a new numbered file instead.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout

CREATE TABLE IF NOT EXISTS "{schema}".backfill_controller (
    run_id bigint PRIMARY KEY REFERENCES "{schema}".backfill_runs (id),
    -- the range measuring (or that measured) the baseline, and since when (a stale claim is taken over)
    baseline_by bigint NOT NULL,
    baseline_started_at timestamptz NOT NULL DEFAULT now(),
    baseline jsonb,
    baseline_at timestamptz,
    -- the pass's decided rate (all ranges together) and the controller's state (RateController.to_dict)
    rows_per_second double precision,
    state jsonb NOT NULL DEFAULT '{}',
    decisions bigint NOT NULL DEFAULT 0 CHECK (decisions >= 0),
    decided_at timestamptz,
    decided_by bigint,
    last_decision jsonb,
    -- decisions by kind since the last backfill_throttle ledger entry, and when that was written
    counts jsonb NOT NULL DEFAULT '{}',
    ledger_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
