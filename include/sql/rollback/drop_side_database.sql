-- Rollback scenario 3: drop a side database that carries our marker (checked by the caller with
-- side_database_marker.sql) before restoring into it again. Must run alone.
-- squawk-ignore-file ban-drop-database, require-lock-timeout, require-statement-timeout
DROP DATABASE IF EXISTS "{database}" WITH (FORCE);
