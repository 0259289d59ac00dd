-- Old side of a row comparison: the rows with key in [@lo, @hi), after @after and up to @upto
-- (keyset paging; NULL: no such bound), in key order, a page at a time, optionally only @keys (an
-- array literal: a re-check or a repair): the digest of old_buckets.sql (decides equality) and
-- the same values as a JSON array (names the columns that differ). Out-of-scope rows are returned
-- too, flagged, so a row that left the scope on one side only is "changed", not "missing".
-- Bounds are text literals resolved against the key column (any btree-orderable type).
SELECT
    t."{key}" AS k,
    (NOT @scoped OR t."{scope_column}"::text = ANY(@scope_values)) AS in_scope,
    md5(t."{key}"::text || row("{values}")::text) AS digest,
    jsonb_build_array("{values}") AS v
FROM "{table}" AS t
WHERE (@lo IS NULL OR t."{key}" >= @lo) AND (@hi IS NULL OR t."{key}" < @hi)
  AND (@after IS NULL OR t."{key}" > @after) AND (@upto IS NULL OR t."{key}" <= @upto)
  AND (@keys IS NULL OR t."{key}" = ANY(@keys))
ORDER BY t."{key}"
LIMIT @page_size;
