-- Rollback only, behind a human approval: drops a column the phase added (the approval shows how
-- many rows hold data in it). Catalog-only (the space is reclaimed by later rewrites).
-- lock_timeout and statement_timeout are set on this session by the DDL executor
-- (ddl/set_timeouts.sql, values from config ddl.*) right before this statement, and a lock timeout
-- (SQLSTATE 55P03) is retried with jittered backoff; squawk cannot see settings made by another file.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
-- squawk-ignore-file ban-drop-column
ALTER TABLE "{schema}"."{table}" DROP COLUMN IF EXISTS "{column}";
