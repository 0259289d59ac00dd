-- After each batch: the high-water mark and progress. Only moves forward, so a stale worker can
-- never rewind a range.
UPDATE "{schema}".backfill_ranges
SET last_key = @last_key,
    rows_read = rows_read + @rows_read,
    rows_written = rows_written + @rows_written,
    rows_deleted = rows_deleted + @rows_deleted,
    batches = batches + 1,
    retries = retries + @retries,
    batch_size = @batch_size,
    rows_per_second = @rows_per_second,
    eta_seconds = @eta_seconds,
    status = CASE WHEN @last_key = key_hi THEN 'done' ELSE 'running' END,
    finished_at = CASE WHEN @last_key = key_hi THEN now() END,
    pause_reason = NULL,
    heartbeat_at = now()
WHERE run_id = @run_id AND range_no = @range_no AND last_key <= @last_key
RETURNING status;
