-- Backfill ghost sweep, legacy side: which of the candidate keys still exist in the old table, and
-- whether each is in scope now.
SELECT src."{key}", (@all_rows OR src."{scope_column}"::text = ANY(@scope_values)) AS in_scope
FROM "{old_schema}"."{old_table}" AS src
WHERE src."{key}" = ANY(@keys::"{key_type}" []);
