-- Backfill plan: the in-scope key space and its quantiles, so the ranges hold about equally many
-- rows however the keys are distributed (one sort of the keys, once per plan).
SELECT
    min(src."{key}")::bigint AS key_min,
    max(src."{key}")::bigint AS key_max,
    count(*)::bigint AS row_count,
    percentile_disc(@fractions::float8[]) WITHIN GROUP (ORDER BY src."{key}")::bigint[] AS quantiles
FROM "{old_schema}"."{old_table}" AS src
WHERE @all_rows OR src."{scope_column}"::text = ANY(@scope_values);
