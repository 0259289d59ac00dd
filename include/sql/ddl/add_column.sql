-- Add a nullable column without a default: a catalog-only change (brief ACCESS EXCLUSIVE lock).
-- The type comes from config, checked against a whitelist (migration_engine.config._sql_type).
-- lock_timeout and statement_timeout are set on this session by the DDL executor
-- (ddl/set_timeouts.sql, values from config ddl.*) right before this statement, and a lock timeout
-- (SQLSTATE 55P03) is retried with jittered backoff; squawk cannot see settings made by another file.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
ALTER TABLE "{schema}"."{table}" ADD COLUMN IF NOT EXISTS "{column}" "{column_type}";
