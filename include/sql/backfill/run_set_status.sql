-- Close a pass: done (every range done) or cancelled (restart requested).
UPDATE "{schema}".backfill_runs
SET status = @status, updated_at = now(), finished_at = CASE WHEN @status = 'done' THEN now() END
WHERE id = @run_id AND status = 'running'
RETURNING id;
