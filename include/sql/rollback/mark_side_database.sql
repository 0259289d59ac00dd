-- Rollback scenario 3: mark the side database as ours (COMMENT takes no bind parameters, so the
-- values travel as transaction-local settings and a DO block quotes them).
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
SELECT
    set_config('migration.side_database', @database_name, true),
    set_config('migration.side_marker', @marker, true);

DO $$
BEGIN
    EXECUTE format('COMMENT ON DATABASE %I IS %L',
        current_setting('migration.side_database'), current_setting('migration.side_marker'));
END
$$;
