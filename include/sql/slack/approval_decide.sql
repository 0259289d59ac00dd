-- Record the decision once: a row that already has one is left alone (no row back).
UPDATE "{schema}".slack_approvals
SET decision = @decision, decided_by = @decided_by, decided_by_name = @decided_by_name,
    decided_via = @decided_via, decided_at = @decided_at
WHERE dag_id = @dag_id AND run_id = @run_id AND task_id = @task_id AND map_index = @map_index
  AND decision IS NULL
RETURNING channel, message_ts, blocks, gate, subject;
