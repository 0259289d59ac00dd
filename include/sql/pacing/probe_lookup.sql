-- Pacing latency probe: one lookup by an indexed key, timed by the caller - the shape of the
-- application's reads, on the probe's own connection (not the batches'). Reads only.
SELECT count(*) FROM "{schema}"."{table}" AS t WHERE t."{key}" = @probe_key;
