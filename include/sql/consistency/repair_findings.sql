-- Repair: what one consistency run found per entity check - its status, exact counts and the
-- stored differing keys (capped per check and kind at consistency.max_stored_keys, so the caller
-- compares the counts with the keys it got), each with the type it was recorded with (NULL: before
-- control-schema migration 007, integer keys).
SELECT r.check_name, r.status, r.counts, r.message, f.kind, f.entity_key, f.key_type
FROM "{schema}".consistency_check_results AS r
LEFT JOIN "{schema}".consistency_findings AS f
    ON f.run_pk = r.run_pk AND f.check_name = r.check_name
WHERE r.run_pk = @run_pk AND r.check_kind = 'entity'
ORDER BY r.check_name, f.kind, f.id;
