-- Every approval request of one DAG run, for the run's approval watcher (reminders before the
-- response timeout, and closing them once the request is answered or timed out).
SELECT task_id, map_index, gate AS approval_point, subject, requested_at, expires_at, decision, decided_via
FROM "{schema}".slack_approvals
WHERE dag_id = @dag_id AND run_id = @run_id
ORDER BY requested_at, task_id, map_index;
