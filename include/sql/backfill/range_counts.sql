-- Backfill plan: in-scope rows per range (key_lo, key_hi] (the denominator of progress and ETA), in
-- one scan of the key space: width_bucket finds each key's range by binary search over the inner
-- cuts (the ranges' upper bounds but the last). width_bucket counts the cuts <= the key; a key equal
-- to a cut belongs to the range that cut closes, hence the correction. Bounds are text, cast to the
-- key's type ("{key_type}"); @key_lo NULL is the open first range; @cuts empty: one range.
SELECT
    (1 + width_bucket(src."{key}", @cuts::text []::"{key_type}" [])
     - (src."{key}" = ANY(@cuts::text []::"{key_type}" []))::int)::int AS range_no,
    count(*)::bigint AS row_count
FROM "{old_schema}"."{old_table}" AS src
WHERE (@key_lo::"{key_type}" IS NULL OR src."{key}" > @key_lo::"{key_type}")
  AND src."{key}" <= @key_hi::"{key_type}"
  AND (@all_rows OR src."{scope_column}"::text = ANY(@scope_values))
GROUP BY 1
ORDER BY 1;
