-- Key range and row count of one side of a diff (rows with a NULL key are not diffed by range).
SELECT min(t."{key}"), max(t."{key}"), count(t."{key}")
FROM "{table}" AS t;
