-- CHECK (col = ANY (allowed values)) NOT VALID, then VALIDATE separately (see add_not_null_check.sql).
-- @allowed is bound as a text array (the column is compared as text, so any column type works).
-- NULL passes a CHECK; NOT NULL is the "required" step's job.
-- lock_timeout and statement_timeout are set on this session by the DDL executor
-- (ddl/set_timeouts.sql, values from config ddl.*) right before this statement, and a lock timeout
-- (SQLSTATE 55P03) is retried with jittered backoff; squawk cannot see settings made by another file.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
-- The executor checks pg_constraint first and only adds a missing constraint.
-- squawk-ignore-file prefer-robust-stmts
ALTER TABLE "{schema}"."{table}" ADD CONSTRAINT "{constraint}" CHECK ("{column}"::text = ANY (@allowed)) NOT VALID;
