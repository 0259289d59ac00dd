-- The approval request row (no lock: for the operator's outcome bookkeeping and tests).
SELECT ti_id, gate AS approval_point, subject, channel, message_ts, blocks, expires_at, decision, decided_by, decided_by_name,
       decided_via, decided_at
FROM "{schema}".slack_approvals
WHERE dag_id = @dag_id AND run_id = @run_id AND task_id = @task_id AND map_index = @map_index;
