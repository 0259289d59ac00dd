-- The approval request whose Slack message was clicked (channel id + message ts, as Slack reports the click):
-- the server-side record a button value is checked against, field by field.
SELECT dag_id, run_id, task_id, map_index, ti_id, gate AS approval_point, expires_at, decision
FROM "{schema}".slack_approvals
WHERE channel = @channel AND message_ts = @message_ts;
