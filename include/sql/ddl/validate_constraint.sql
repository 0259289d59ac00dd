-- Scans the table under SHARE UPDATE EXCLUSIVE: reads and writes carry on meanwhile.
-- lock_timeout and statement_timeout are set on this session by the DDL executor
-- (ddl/set_timeouts.sql, values from config ddl.*) right before this statement, and a lock timeout
-- (SQLSTATE 55P03) is retried with jittered backoff; squawk cannot see settings made by another file.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
-- The executor checks pg_constraint.convalidated first; validating twice is harmless anyway.
-- squawk-ignore-file prefer-robust-stmts
ALTER TABLE "{schema}"."{table}" VALIDATE CONSTRAINT "{constraint}";
