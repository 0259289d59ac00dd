-- Phase 6 archive (seed 6.2): rename an old table to its archive name and document the archive
-- and safe-drop dates on it, sent as one batch = one transaction (the rename never exists without
-- its comment). COMMENT takes no bind parameters, so the values travel as transaction-local
-- settings and a DO block quotes them with format(%I, %L).
-- The rename takes an ACCESS EXCLUSIVE lock for a catalog change only; lock_timeout and
-- statement_timeout are set on this session by the DDL executor (ddl/set_timeouts.sql) and a lock
-- timeout is retried with backoff. Re-runs are safe because the step checks the catalog first.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout, prefer-robust-stmts
-- Renaming is the point of archiving: the phase runs only after nothing writes the table any more.
-- squawk-ignore-file renaming-table
SELECT
    set_config('migration.archive_schema', @schema_name, true),
    set_config('migration.archive_table', @archived_name, true),
    set_config('migration.archive_comment', @comment, true);

ALTER TABLE "{schema}"."{table}" RENAME TO "{archived}";

DO $$
BEGIN
    EXECUTE format('COMMENT ON TABLE %I.%I IS %L',
        current_setting('migration.archive_schema'),
        current_setting('migration.archive_table'),
        current_setting('migration.archive_comment'));
END
$$;
