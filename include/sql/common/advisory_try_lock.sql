-- Session-level advisory lock keyed by a name, without waiting: callers poll it between short
-- sleeps. (A session blocked in pg_advisory_lock keeps a transaction open, which a CREATE INDEX
-- CONCURRENTLY run by the lock holder would wait for: a deadlock.)
SELECT pg_try_advisory_lock(hashtext(@lock_name));
