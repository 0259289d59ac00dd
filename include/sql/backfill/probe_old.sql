-- Backfill latency probe, legacy side: one primary-key lookup, timed by the caller - the shape of
-- the application's reads, on the probe's own connection (not the copy's).
SELECT count(*) FROM "{old_schema}"."{old_table}" AS src WHERE src."{key}" = @probe_key;
