-- Rollback scenario 3: does the side database exist, and is it ours (its comment carries our
-- marker)? Only a database with the marker is ever dropped and re-created.
SELECT d.datname, shobj_description(d.oid, 'pg_database') AS comment
FROM pg_database AS d
WHERE d.datname = @database_name;
