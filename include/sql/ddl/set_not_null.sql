-- Runs only after a validated CHECK ("{column}" IS NOT NULL) exists on the table: Postgres >= 12
-- then proves the column has no NULLs from that constraint and skips the full-table scan, so the
-- ACCESS EXCLUSIVE lock is held for a catalog update only.
-- lock_timeout and statement_timeout are set on this session by the DDL executor
-- (ddl/set_timeouts.sql, values from config ddl.*) right before this statement, and a lock timeout
-- (SQLSTATE 55P03) is retried with jittered backoff; squawk cannot see settings made by another file.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
-- squawk-ignore-file adding-not-nullable-field, prefer-robust-stmts
ALTER TABLE "{schema}"."{table}" ALTER COLUMN "{column}" SET NOT NULL;
