-- Backfill commit probe, new side: the smallest transactional write there is - a logical-decoding
-- message (no table, nothing in the user's schema) that takes a transaction id, so its commit writes a
-- commit record and waits for the WAL flush like every application write on the database being
-- copied into. Timed by the caller, on the probe's own autocommit connection (one transaction).
SELECT pg_logical_emit_message(true, @prefix, '') IS NOT NULL;
