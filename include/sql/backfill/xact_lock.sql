-- Transaction-scoped advisory lock keyed by a name (released at commit/rollback).
SELECT pg_advisory_xact_lock(hashtext(@lock_name));
