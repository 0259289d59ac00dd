-- Scratch databases of the restore check still present (each check drops its own right after it).
SELECT d.datname
FROM pg_database AS d
WHERE d.datname LIKE @prefix || '%'
ORDER BY 1;
