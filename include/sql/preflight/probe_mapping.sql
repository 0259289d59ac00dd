-- Preflight: the backfill's own select expressions over the old table, LIMIT 0: reads no row, and
-- the result columns' types are exactly what each mapping produces (plain column, value map, and
-- any transform the mapping composes), so the type check needs no hand-written table of outputs.
-- "{select_list}" is composed by migration_engine.backfill.sqlgen (EntitySql.select_items).
SELECT "{select_list}"
FROM "{old_schema}"."{old_table}" AS src
LIMIT 0;
