-- Session-level advisory lock keyed by a name: serialises one kind of work across processes.
SELECT pg_advisory_lock(hashtext(@lock_name));
