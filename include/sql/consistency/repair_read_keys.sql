-- Repair, legacy side: the in-scope old rows of the keys to copy, mapped exactly as the backfill
-- maps them ("{select_list}" from migration_engine.backfill.sqlgen: value maps applied here, a
-- looked-up column carries the old match value), streamed out with COPY into the new side's stage.
-- @keys: a list of integers or an array literal of any key type (consistency/keys.py); it takes the key column's type.
COPY (
    SELECT src."{key}", "{select_list}"
    FROM "{old_schema}"."{old_table}" AS src
    WHERE src."{key}" = ANY(@keys)
      AND (@all_rows OR src."{scope_column}"::text = ANY(@scope_values))
    ORDER BY src."{key}"
) TO STDOUT;
