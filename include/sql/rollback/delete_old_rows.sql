-- Rollback scenario 3 (rollback_deletes: delete): remove the old rows whose new row was deleted
-- after the cutover. The scope/mark condition is repeated so a row that changed since it was
-- selected is never removed. Never cascades: a row other tables still reference fails the
-- statement (the caller names the constraint) and nothing is removed.
-- The keys are cast to the old key's type ("{key_type}": int, uuid, text ...; migration_engine/keys.py).
DELETE FROM "{table}" AS t
WHERE t."{key}" = ANY(@keys::"{key_type}" [])
  AND (@all_rows OR t."{scope_column}"::text = ANY(@scope_values))
RETURNING t."{key}", to_jsonb(t) AS old_row;
