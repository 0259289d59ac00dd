-- Backfill, new side, before a batch is written: does the batch's key range (after_key, last_key]
-- already hold new rows (an earlier pass, a dual-write)? One probe of the legacy-id index that
-- stops at the first row. No: the batch takes the plain-insert path (insert_into_empty_range.sql)
-- and the ghost sweep has nothing to look at (a ghost is a new row that was there before the
-- batch). @after_key NULL: the open first range.
SELECT EXISTS (
    SELECT 1
    FROM "{new_schema}"."{new_table}" AS t
    WHERE (@after_key::"{key_type}" IS NULL OR t."{legacy_id}" > @after_key::"{key_type}")
      AND t."{legacy_id}" <= @last_key::"{key_type}"
);
