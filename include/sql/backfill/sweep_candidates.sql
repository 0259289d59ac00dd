-- Backfill ghost sweep, new side: new rows with a legacy id in the batch's key range that the
-- batch did not copy (their old row was not in scope, or did not exist, when the batch read it),
-- and whether each is in scope on the new side. Usually none: one range scan on the legacy-id index.
SELECT t."{legacy_id}", (NOT @scoped OR t."{scope_column}"::text = ANY(@scope_values)) AS in_scope
FROM "{new_schema}"."{new_table}" AS t
WHERE t."{legacy_id}" > @after_key AND t."{legacy_id}" <= @last_key
  AND t."{legacy_id}" <> ALL(@copied::bigint [])
ORDER BY t."{legacy_id}";
