-- After each batch: the high-water mark and progress. Compare-and-set on the mark the worker
-- started the batch from (@prev_key, text equality, so any key type): a stale worker can never
-- rewind a range or skip past another's checkpoint. @done: the batch's page reached key_hi (a
-- short page), so the mark is set to key_hi exactly and the range is done.
UPDATE "{schema}".backfill_ranges
SET last_key = CASE WHEN @done THEN key_hi ELSE @last_key END,
    rows_read = rows_read + @rows_read,
    rows_written = rows_written + @rows_written,
    rows_deleted = rows_deleted + @rows_deleted,
    batches = batches + 1,
    retries = retries + @retries,
    batch_size = @batch_size,
    rows_per_second = @rows_per_second,
    eta_seconds = @eta_seconds,
    status = CASE WHEN @done THEN 'done' ELSE 'running' END,
    finished_at = CASE WHEN @done THEN now() END,
    pause_reason = NULL,
    heartbeat_at = now()
WHERE run_id = @run_id AND range_no = @range_no AND status <> 'done'
  AND last_key IS NOT DISTINCT FROM @prev_key::text
RETURNING status;
