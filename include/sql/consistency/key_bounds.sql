-- Key range and row count of one side of a diff (rows with a NULL key are not diffed by range).
-- The lowest and highest key by ORDER BY ... LIMIT 1 (min/max do not exist for every type, e.g.
-- uuid; both read one end of the key's index).
SELECT
    (SELECT t."{key}" FROM "{table}" AS t WHERE t."{key}" IS NOT NULL ORDER BY t."{key}" LIMIT 1) AS lo,
    (SELECT t."{key}" FROM "{table}" AS t WHERE t."{key}" IS NOT NULL ORDER BY t."{key}" DESC LIMIT 1) AS hi,
    (SELECT count(t."{key}") FROM "{table}" AS t) AS n;
