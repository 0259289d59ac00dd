-- Backfill plan: in-scope rows per range (key_lo, key_hi] (the denominator of progress and ETA).
SELECT r.range_no, count(src."{key}")::bigint
FROM unnest(@key_lo::bigint[], @key_hi::bigint[]) WITH ORDINALITY AS r (key_lo, key_hi, range_no)
LEFT JOIN "{old_schema}"."{old_table}" AS src
    ON src."{key}" > r.key_lo
    AND src."{key}" <= r.key_hi
    AND (@all_rows OR src."{scope_column}"::text = ANY(@scope_values))
GROUP BY r.range_no
ORDER BY r.range_no;
