-- The server and database facts of one sample (any role can read these; shared_preload_libraries
-- cannot be: it needs pg_read_all_settings, so a missing preload is detected by reading the view).
SELECT current_database() AS database_name,
       current_setting('server_version_num')::bigint AS server_version_num,
       current_setting('max_connections')::bigint AS max_connections,
       current_setting('superuser_reserved_connections')::bigint AS reserved_connections,
       pg_database_size(current_database()) AS database_bytes,
       pg_is_in_recovery() AS in_recovery
