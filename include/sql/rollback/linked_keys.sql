-- Rollback scenario 3: which of these old keys a live new-table row still links to (its
-- "{legacy_id}"); an old key missing here was deleted in the new table after the cutover.
SELECT n."{legacy_id}"
FROM "{table}" AS n
WHERE n."{legacy_id}" = ANY(@keys);
