-- Backfill plan: the in-scope key space and its quantiles, so the ranges hold about equally many
-- rows however the keys are distributed (one sort of the keys, once per plan). Any btree-orderable
-- key type: the first and last "quantiles" (fractions 0 and 1) are the smallest and largest key
-- (no min()/max(), which uuid lacks), and all of them come back as text, the form the control
-- tables store (cast back with the key's type where compared: migration_engine/keys.py).
SELECT
    count(*)::bigint AS row_count,
    (percentile_disc(@fractions::float8 []) WITHIN GROUP (ORDER BY src."{key}"))::text [] AS quantiles
FROM "{old_schema}"."{old_table}" AS src
WHERE @all_rows OR src."{scope_column}"::text = ANY(@scope_values);
