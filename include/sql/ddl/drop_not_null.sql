-- Rollback only: restores a column that was nullable before the phase. Catalog-only.
-- lock_timeout and statement_timeout are set on this session by the DDL executor
-- (ddl/set_timeouts.sql, values from config ddl.*) right before this statement, and a lock timeout
-- (SQLSTATE 55P03) is retried with jittered backoff; squawk cannot see settings made by another file.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
-- squawk-ignore-file ban-drop-not-null, prefer-robust-stmts
ALTER TABLE "{schema}"."{table}" ALTER COLUMN "{column}" DROP NOT NULL;
