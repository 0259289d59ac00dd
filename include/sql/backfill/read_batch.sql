-- Backfill, legacy side: one keyset page of mapped rows, streamed out with COPY (text format) and
-- straight into the new side's stage table - no per-row Python.
-- Keyset, not OFFSET: each page starts at the previous page's last key, so every page costs the
-- same index range scan however deep into the table it is.
-- "{select_list}": the entity's columns in stage-table order, composed from the config's column
-- mapping by migration_engine.backfill.sqlgen: value maps (ACTIVE -> active) are applied here, in
-- SQL; a looked-up column carries the old match value and is resolved on the new side.
-- Bounds are text cast to the key's type ("{key_type}", any supported key: migration_engine/keys.py);
-- @after_key NULL is the open first range (the constant test is folded away by the planner).
COPY (
    SELECT src."{key}", "{select_list}"
    FROM "{old_schema}"."{old_table}" AS src
    WHERE (@after_key::"{key_type}" IS NULL OR src."{key}" > @after_key::"{key_type}")
      AND src."{key}" <= @range_hi::"{key_type}"
      AND (@all_rows OR src."{scope_column}"::text = ANY(@scope_values))
    ORDER BY src."{key}"
    LIMIT @batch_limit
) TO STDOUT;
