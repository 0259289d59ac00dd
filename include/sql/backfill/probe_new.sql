-- Backfill latency probe, new side: one lookup by legacy id (the written table's index), timed by
-- the caller, on the probe's own connection.
SELECT count(*) FROM "{new_schema}"."{new_table}" AS dst WHERE dst."{legacy_id}" = @probe_key;
