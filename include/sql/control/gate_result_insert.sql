INSERT INTO "{schema}".gate_results (gate, status, figures, reason, dag_id, run_id)
VALUES (@gate, @status, @figures::jsonb, @reason, @dag_id, @run_id)
RETURNING id, evaluated_at;
