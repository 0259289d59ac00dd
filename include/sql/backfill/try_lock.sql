-- Backfill: one worker per range. Session-level, so it is released when the worker's connection
-- dies (a killed worker never blocks its retry).
SELECT pg_try_advisory_lock(hashtext(@lock_name));
