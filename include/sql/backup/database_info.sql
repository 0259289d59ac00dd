-- What the pre-flight backup needs to know about the database before dumping it.
SELECT current_database() AS database,
       pg_database_size(current_database()) AS size_bytes,
       current_setting('server_version_num')::int AS server_version_num,
       current_setting('server_version') AS server_version;
