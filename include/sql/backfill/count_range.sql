-- Backfill recheck, legacy side: all rows (any status) with a key in the batch's range. Only a
-- delete lowers it (keys are never reused, status changes do not count), so comparing the count
-- at read time with the count after our commit detects rows deleted while we copied - a range
-- scan on the key index instead of one probe per copied key. @after_key NULL: the open first range.
SELECT count(*)
FROM "{old_schema}"."{old_table}" AS src
WHERE (@after_key::"{key_type}" IS NULL OR src."{key}" > @after_key::"{key_type}")
  AND src."{key}" <= @last_key::"{key_type}";
