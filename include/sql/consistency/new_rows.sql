-- New side of a row comparison: rows whose "{legacy_id}" is in [@lo, @hi), after @after and up to
-- @upto, in key order, a page at a time, optionally only @keys; digest and values as in
-- new_buckets.sql / old_rows.sql.
SELECT
    n."{legacy_id}" AS k,
    (NOT @scoped OR n."{scope_column}"::text = ANY(@scope_values)) AS in_scope,
    md5(n."{legacy_id}"::text || row("{values}")::text) AS digest,
    jsonb_build_array("{values}") AS v,
    n."{new_key}" AS new_key
FROM "{source}" AS n
WHERE (@lo IS NULL OR n."{legacy_id}" >= @lo) AND (@hi IS NULL OR n."{legacy_id}" < @hi)
  AND (@after IS NULL OR n."{legacy_id}" > @after) AND (@upto IS NULL OR n."{legacy_id}" <= @upto)
  AND (@keys IS NULL OR n."{legacy_id}" = ANY(@keys))
ORDER BY n."{legacy_id}"
LIMIT @page_size;
