-- A worker takes a range (it holds the range's advisory lock): running, who, since when.
UPDATE "{schema}".backfill_ranges
SET status = 'running', worker = @worker, error = NULL, pause_reason = NULL,
    started_at = coalesce(started_at, now()), heartbeat_at = now()
WHERE run_id = @run_id AND range_no = @range_no AND status <> 'done';
