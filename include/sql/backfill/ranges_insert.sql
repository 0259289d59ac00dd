-- The ranges of a new pass: (key_lo, key_hi] each, non-overlapping, high-water mark at key_lo.
-- Bounds as text (migration_engine/keys.py); key_lo NULL = the open first range of a non-integer key.
INSERT INTO "{schema}".backfill_ranges (run_id, range_no, key_lo, key_hi, last_key, rows_total)
SELECT @run_id, r.range_no - 1, r.key_lo, r.key_hi, r.key_lo, r.rows_total
FROM unnest(@key_lo::text [], @key_hi::text [], @rows_total::bigint [])
    WITH ORDINALITY AS r (key_lo, key_hi, rows_total, range_no);
