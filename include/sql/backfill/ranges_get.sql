-- A pass's ranges (or one), with the pass's key type so the text bounds read back as key values.
SELECT r.run_id, r.range_no, r.key_lo, r.key_hi, r.last_key, r.status, r.rows_total, r.rows_read,
       r.rows_written, r.rows_deleted, r.batches, r.retries, r.batch_size, r.rows_per_second,
       r.eta_seconds, r.pause_reason, r.paused_seconds, r.worker, r.error, r.started_at,
       r.heartbeat_at, r.finished_at, b.key_type
FROM "{schema}".backfill_ranges AS r
JOIN "{schema}".backfill_runs AS b ON b.id = r.run_id
WHERE r.run_id = @run_id AND (@range_no::bigint IS NULL OR r.range_no = @range_no::bigint)
ORDER BY r.range_no;
