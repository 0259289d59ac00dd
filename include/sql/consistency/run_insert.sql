-- Start a consistency run (status 'running' until run_finish.sql).
INSERT INTO "{schema}".consistency_runs (kind, dag_id, run_id)
VALUES (@kind, @dag_id, @run_id)
RETURNING id, started_at;
