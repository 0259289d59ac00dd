-- Phase 6: (re)write the archive comment of an archived table (repairs a table renamed by hand).
-- COMMENT takes no bind parameters: the values travel as transaction-local settings.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
SELECT
    set_config('migration.archive_schema', @schema_name, true),
    set_config('migration.archive_table', @table_name, true),
    set_config('migration.archive_comment', @comment, true);

DO $$
BEGIN
    EXECUTE format('COMMENT ON TABLE %I.%I IS %L',
        current_setting('migration.archive_schema'),
        current_setting('migration.archive_table'),
        current_setting('migration.archive_comment'));
END
$$;
