SELECT run_id, range_no, key_lo, key_hi, last_key, status, rows_total, rows_read, rows_written,
       rows_deleted, batches, retries, batch_size, rows_per_second, eta_seconds, pause_reason,
       paused_seconds, worker, error, started_at, heartbeat_at, finished_at
FROM "{schema}".backfill_ranges
WHERE run_id = @run_id AND (@range_no::bigint IS NULL OR range_no = @range_no::bigint)
ORDER BY range_no;
