-- Removes an INVALID leftover of an interrupted CREATE INDEX CONCURRENTLY before rebuilding it, or
-- a phase's index during its approved rollback. CONCURRENTLY: no lock that blocks reads/writes.
-- Runs outside any transaction block (the executor uses autocommit).
-- lock_timeout and statement_timeout are set on this session by the DDL executor
-- (ddl/set_timeouts.sql, values from config ddl.*) right before this statement, and a lock timeout
-- (SQLSTATE 55P03) is retried with jittered backoff; squawk cannot see settings made by another file.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
DROP INDEX CONCURRENTLY IF EXISTS "{schema}"."{index}";
