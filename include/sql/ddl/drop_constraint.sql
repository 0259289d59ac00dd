-- Drop a constraint this engine added (a NOT NULL helper check once SET NOT NULL holds, or a
-- phase's CHECK during its approved rollback). Catalog-only, brief ACCESS EXCLUSIVE lock.
-- lock_timeout and statement_timeout are set on this session by the DDL executor
-- (ddl/set_timeouts.sql, values from config ddl.*) right before this statement, and a lock timeout
-- (SQLSTATE 55P03) is retried with jittered backoff; squawk cannot see settings made by another file.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
-- squawk-ignore-file ban-drop-constraint
ALTER TABLE "{schema}"."{table}" DROP CONSTRAINT IF EXISTS "{constraint}";
