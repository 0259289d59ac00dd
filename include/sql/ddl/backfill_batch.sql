-- One short transaction of a batched backfill: only rows of one key range that are still NULL,
-- so re-running after an interruption continues where it stopped.
-- Row locks only, bounded by the batch size; lock_timeout/statement_timeout are set by the
-- executor (ddl/set_timeouts.sql) on this session.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
UPDATE "{schema}"."{table}"
SET "{column}" = @value
WHERE (@after IS NULL OR "{key}" > @after)
  AND "{key}" <= @upto
  AND "{column}" IS NULL;
