-- The control schema's own migration history, created by migration_engine.control_schema.upgrade
-- before it applies include/sql/control/migrations/*.sql. One row per applied file: its number,
-- file name, sha256 of the file text (an edited shipped migration is refused), when and by whom.
-- New, tiny table in our own schema, sent through the DDL executor (ddl.lock_timeout /
-- ddl.statement_timeout set first, lock timeouts retried), so the file does not SET them.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
CREATE SCHEMA IF NOT EXISTS "{schema}";

CREATE TABLE IF NOT EXISTS "{schema}".schema_version (
    version bigint PRIMARY KEY CHECK (version >= 1),
    name text NOT NULL UNIQUE,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    applied_by text NOT NULL
);
