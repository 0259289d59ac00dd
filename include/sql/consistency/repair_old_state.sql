-- Repair (and the backfill's ghost sweep), legacy side: which of the keys still exist in the old
-- table, and whether each is in scope now.
-- @keys: a list of integers or an array literal of any key type (consistency/keys.py); it takes the key column's type.
SELECT src."{key}", (@all_rows OR src."{scope_column}"::text = ANY(@scope_values)) AS in_scope
FROM "{old_schema}"."{old_table}" AS src
WHERE src."{key}" = ANY(@keys);
