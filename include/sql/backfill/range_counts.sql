-- Backfill plan: in-scope rows per range (key_lo, key_hi] (the denominator of progress and ETA).
-- Bounds are text, cast to the key's type ("{key_type}"); a NULL key_lo is the open first range.
SELECT r.range_no, count(src."{key}")::bigint
FROM unnest(@key_lo::text [], @key_hi::text []) WITH ORDINALITY AS r (key_lo, key_hi, range_no)
LEFT JOIN "{old_schema}"."{old_table}" AS src
    ON (r.key_lo IS NULL OR src."{key}" > r.key_lo::"{key_type}")
    AND src."{key}" <= r.key_hi::"{key_type}"
    AND (@all_rows OR src."{scope_column}"::text = ANY(@scope_values))
GROUP BY r.range_no
ORDER BY r.range_no;
