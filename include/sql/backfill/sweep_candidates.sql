-- Backfill ghost sweep, new side: new rows with a legacy id in the batch's key range that the
-- batch did not copy (their old row was not in scope, or did not exist, when the batch read it),
-- and whether each is in scope on the new side. Usually none: one range scan on the legacy-id index.
-- Bounds and copied keys are cast to the legacy key's type ("{key_type}"); @after_key NULL: the
-- open first range.
SELECT t."{legacy_id}", (NOT @scoped OR t."{scope_column}"::text = ANY(@scope_values)) AS in_scope
FROM "{new_schema}"."{new_table}" AS t
WHERE (@after_key::"{key_type}" IS NULL OR t."{legacy_id}" > @after_key::"{key_type}")
  AND t."{legacy_id}" <= @last_key::"{key_type}"
  AND t."{legacy_id}" <> ALL(@copied::"{key_type}" [])
ORDER BY t."{legacy_id}";
