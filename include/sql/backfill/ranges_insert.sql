-- The ranges of a new pass: (key_lo, key_hi] each, non-overlapping, high-water mark at key_lo.
INSERT INTO "{schema}".backfill_ranges (run_id, range_no, key_lo, key_hi, last_key, rows_total)
SELECT @run_id, r.range_no - 1, r.key_lo, r.key_hi, r.key_lo, r.rows_total
FROM unnest(@key_lo::bigint[], @key_hi::bigint[], @rows_total::bigint[])
    WITH ORDINALITY AS r (key_lo, key_hi, rows_total, range_no);
