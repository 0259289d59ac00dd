-- Rollback guard: rows whose value in a column the phase added is something other than what the
-- phase itself put there (NULL or the configured default/backfill value) - i.e. data the
-- application wrote since, which dropping the column would lose. A full scan; run only when
-- planning a rollback.
SELECT count(*)
FROM "{schema}"."{table}"
WHERE "{column}" IS NOT NULL
  AND (@phase_value IS NULL OR "{column}"::text IS DISTINCT FROM @phase_value);
