-- Shadow comparison, new side: the new rows of the given old keys ("{legacy_id}"), their values in
-- the order of shadow_old_values.sql ("{source}" wraps the table once per looked-up column, as in
-- new_rows.sql), and whether each row is in the entity's scope.
SELECT
    n."{legacy_id}" AS k,
    (NOT @scoped OR n."{scope_column}"::text = ANY(@scope_values)) AS in_scope,
    jsonb_build_array("{values}") AS v
FROM "{source}" AS n
WHERE n."{legacy_id}" = ANY(@keys);
