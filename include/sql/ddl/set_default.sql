-- Catalog-only: affects rows inserted from now on (brief ACCESS EXCLUSIVE lock).
-- lock_timeout and statement_timeout are set on this session by the DDL executor
-- (ddl/set_timeouts.sql, values from config ddl.*) right before this statement, and a lock timeout
-- (SQLSTATE 55P03) is retried with jittered backoff; squawk cannot see settings made by another file.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
-- The executor runs each statement on its own (autocommit); idempotency is checked in the catalog.
-- squawk-ignore-file prefer-robust-stmts
ALTER TABLE "{schema}"."{table}" ALTER COLUMN "{column}" SET DEFAULT @default_value;
