-- Serialise all senders of one alert key until the end of the current transaction
-- (released by COMMIT/ROLLBACK), so two tasks alerting at once page once, not twice.
SELECT pg_advisory_xact_lock(hashtext('migration_alert:' || @dedup_key));
