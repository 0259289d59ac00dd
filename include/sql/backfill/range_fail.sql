-- A worker gave up on a range (the high-water mark stays: a retry resumes from it).
UPDATE "{schema}".backfill_ranges
SET status = 'failed', error = @error, heartbeat_at = now()
WHERE run_id = @run_id AND range_no = @range_no AND status <> 'done';
