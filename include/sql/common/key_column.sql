-- A key column from the catalog (migration_engine/keys.py): its declared type, the base type under
-- a domain (what comparisons use), whether that type has a default btree operator class (can be
-- ordered at all), and the column's collation when it is not the database default.
SELECT
    format_type(a.atttypid, a.atttypmod) AS type_name,
    base.typname::text AS base_type,
    EXISTS (
        SELECT 1
        FROM pg_opclass AS oc
        JOIN pg_am AS am ON am.oid = oc.opcmethod
        WHERE am.amname = 'btree' AND oc.opcdefault AND oc.opcintype = base.oid
    ) AS orderable,
    CASE WHEN a.attcollation NOT IN (0, 100) THEN coll.collname::text END AS collation_name
FROM pg_attribute AS a
JOIN pg_type AS t ON t.oid = a.atttypid
JOIN pg_type AS base ON base.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
LEFT JOIN pg_collation AS coll ON coll.oid = a.attcollation
WHERE a.attrelid = to_regclass(format('%I.%I', @schema_name, @table_name))
  AND a.attname = @column_name
  AND a.attnum > 0
  AND NOT a.attisdropped;
