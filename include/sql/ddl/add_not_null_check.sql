-- CHECK (col IS NOT NULL) NOT VALID: enforced for new and updated rows at once, without scanning
-- the table (brief ACCESS EXCLUSIVE lock). VALIDATE CONSTRAINT then scans under SHARE UPDATE
-- EXCLUSIVE, which does not block reads or writes, and SET NOT NULL reuses the validated check.
-- lock_timeout and statement_timeout are set on this session by the DDL executor
-- (ddl/set_timeouts.sql, values from config ddl.*) right before this statement, and a lock timeout
-- (SQLSTATE 55P03) is retried with jittered backoff; squawk cannot see settings made by another file.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
-- The executor checks pg_constraint first and only adds a missing constraint.
-- squawk-ignore-file prefer-robust-stmts
ALTER TABLE "{schema}"."{table}" ADD CONSTRAINT "{constraint}" CHECK ("{column}" IS NOT NULL) NOT VALID;
