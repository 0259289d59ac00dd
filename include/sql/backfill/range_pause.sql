-- The throttle paused (reason set) or resumed (reason NULL, pause time added) a range.
UPDATE "{schema}".backfill_ranges
SET status = CASE WHEN @pause_reason::text IS NULL THEN 'running' ELSE 'paused' END,
    pause_reason = @pause_reason::text,
    paused_seconds = paused_seconds + @paused_seconds,
    heartbeat_at = now()
WHERE run_id = @run_id AND range_no = @range_no AND status <> 'done';
