-- The server and database facts of one sample (any role can read these).
SELECT current_database() AS database_name,
       current_setting('server_version_num')::bigint AS server_version_num,
       current_setting('max_connections')::bigint AS max_connections,
       current_setting('superuser_reserved_connections')::bigint AS reserved_connections,
       pg_database_size(current_database()) AS database_bytes,
       pg_is_in_recovery() AS in_recovery,
       current_setting('shared_preload_libraries') AS shared_preload_libraries
