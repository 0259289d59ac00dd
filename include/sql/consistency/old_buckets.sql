-- Old side of a range diff: count and checksum of the in-scope rows in [@lo, @hi) (a NULL bound:
-- unbounded), per sub-range between the keys @boundaries (an array literal, sorted in key order;
-- bucket 0 is below the first). width_bucket compares in the key's own type and collation, so
-- this works for any btree-orderable key (integer, uuid, text). "{values}" is the composed list
-- of the MAPPED values in the config's column order: old columns as they are, value-mapped columns
-- through expr/value_map.sql, and the source column of a looked-up column (its new-side
-- counterpart is translated back, expr/lookup_source.sql).
-- Row digest: md5 of the key and the row's text form (the session pins TimeZone, DateStyle and
-- float output, so both servers render equal values identically); the first 64 bits are summed,
-- which does not depend on row order.
SELECT
    width_bucket(t."{key}", @boundaries) AS bucket,
    count(*) AS n,
    sum(('x' || left(md5(t."{key}"::text || row("{values}")::text), 16))::bit(64)::bigint) AS checksum
FROM "{table}" AS t
WHERE (@lo IS NULL OR t."{key}" >= @lo) AND (@hi IS NULL OR t."{key}" < @hi)
  AND t."{key}" IS NOT NULL
  AND (NOT @scoped OR t."{scope_column}"::text = ANY(@scope_values))
GROUP BY 1;
