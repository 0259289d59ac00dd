-- Migration 005: Slack approval state (replay protection and approval messages), written by the
-- notifier in a worker and by the interactivity endpoint in the API server.
-- Runs in one transaction through the DDL executor (ddl.lock_timeout / ddl.statement_timeout set
-- first, lock timeouts retried); idempotent, so an unversioned control schema is adopted in place.
-- Never edit once shipped: add a new numbered file instead.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout

-- Every signed interactivity request we accepted, keyed by its signature: a second delivery of the
-- same (timestamp, signature) is a replay and is refused. Also the trail of every click and its outcome.
CREATE TABLE IF NOT EXISTS "{schema}".slack_requests (
    request_ts bigint NOT NULL,
    signature text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    user_id text,
    user_name text,
    action text,
    approval_key text,
    outcome text NOT NULL DEFAULT 'received',
    detail text NOT NULL DEFAULT '',
    PRIMARY KEY (request_ts, signature)
);

-- One row per human approval request (HITL task instance): where its Slack message is and what
-- was decided, by whom, when and through which channel (slack, airflow UI, timeout default).
CREATE TABLE IF NOT EXISTS "{schema}".slack_approvals (
    dag_id text NOT NULL,
    run_id text NOT NULL,
    task_id text NOT NULL,
    map_index bigint NOT NULL DEFAULT -1,
    ti_id text NOT NULL,
    gate text NOT NULL,
    subject text NOT NULL DEFAULT '',
    channel text,
    message_ts text,
    blocks jsonb NOT NULL DEFAULT '[]',
    delivery_error text,
    requested_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz,
    decision text CHECK (decision IN ('Approve', 'Reject')),
    decided_by text,
    decided_by_name text,
    decided_via text CHECK (decided_via IN ('slack', 'airflow', 'timeout')),
    decided_at timestamptz,
    PRIMARY KEY (dag_id, run_id, task_id, map_index)
);
