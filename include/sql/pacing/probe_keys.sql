-- Pacing latency probe: the first keys of the table in key order (walks the key's index), the rows
-- the first batches touch; the probe looks them up until the batches report keys of their own.
SELECT t."{key}" FROM "{schema}"."{table}" AS t ORDER BY t."{key}" LIMIT @limit_rows;
