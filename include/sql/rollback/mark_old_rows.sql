-- Rollback scenario 3 (rollback_deletes: mark): mark the old rows whose new row was deleted after
-- the cutover the way the old application marks a deleted row (e.g. status = 'ARCHIVED'); the
-- value is a text literal cast to the column's type. Only rows still in scope and not yet marked.
-- The keys are cast to the old key's type ("{key_type}": int, uuid, text ...; migration_engine/keys.py).
UPDATE "{table}" AS t
SET "{mark_column}" = @mark_value
WHERE t."{key}" = ANY(@keys::"{key_type}" [])
  AND (@all_rows OR t."{scope_column}"::text = ANY(@scope_values))
  AND t."{mark_column}"::text IS DISTINCT FROM @mark_value
RETURNING t."{key}", to_jsonb(t) AS old_row;
