-- A new approval request (or a new try of the same task): forget any previous message and decision.
-- The column "gate" holds the approval point (named before the rename; kept, see 001_slack_schema.sql).
INSERT INTO "{schema}".slack_approvals (
    dag_id, run_id, task_id, map_index, ti_id, gate, subject, channel, message_ts, blocks,
    delivery_error, requested_at, expires_at
)
VALUES (
    @dag_id, @run_id, @task_id, @map_index, @ti_id, @approval_point, @subject, @channel, @message_ts, @blocks::jsonb,
    @delivery_error, now(), @expires_at
)
ON CONFLICT (dag_id, run_id, task_id, map_index) DO UPDATE SET
    ti_id = EXCLUDED.ti_id,
    gate = EXCLUDED.gate,
    subject = EXCLUDED.subject,
    channel = EXCLUDED.channel,
    message_ts = EXCLUDED.message_ts,
    blocks = EXCLUDED.blocks,
    delivery_error = EXCLUDED.delivery_error,
    requested_at = EXCLUDED.requested_at,
    expires_at = EXCLUDED.expires_at,
    decision = NULL,
    decided_by = NULL,
    decided_by_name = NULL,
    decided_via = NULL,
    decided_at = NULL;
