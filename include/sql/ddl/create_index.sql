-- CREATE INDEX CONCURRENTLY: builds without blocking writes; must run outside a transaction
-- block (the executor uses autocommit). If it is interrupted it leaves an INVALID index, which the
-- executor detects (pg_index.indisvalid), drops concurrently and rebuilds.
-- "{columns}" is the config's column list, each quoted as an identifier.
-- lock_timeout and statement_timeout are set on this session by the DDL executor
-- (ddl/set_timeouts.sql, values from config ddl.*) right before this statement, and a lock timeout
-- (SQLSTATE 55P03) is retried with jittered backoff; squawk cannot see settings made by another file.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
CREATE INDEX CONCURRENTLY IF NOT EXISTS "{index}" ON "{schema}"."{table}" ("{columns}");
