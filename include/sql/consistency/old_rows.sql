-- Old side of a row comparison: the rows in (@after, @hi) in key order, a page at a time,
-- optionally only @keys (a re-check): the digest of old_buckets.sql (decides equality) and the
-- same values as a JSON array (names the columns that differ). Out-of-scope rows are returned
-- too, flagged, so a row that left the scope on one side only is "changed", not "missing".
SELECT
    t."{key}" AS k,
    (NOT @scoped OR t."{scope_column}"::text = ANY(@scope_values)) AS in_scope,
    md5(t."{key}"::text || row("{values}")::text) AS digest,
    jsonb_build_array("{values}") AS v
FROM "{table}" AS t
WHERE t."{key}" > @after AND t."{key}" < @hi
  AND (@keys::bigint [] IS NULL OR t."{key}" = ANY(@keys::bigint []))
ORDER BY t."{key}"
LIMIT @page_size;
