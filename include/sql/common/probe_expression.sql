-- The setup preflight and the consistency plan: the result type of one mapped column's value,
-- as the legacy server plans it ("{value}": the transform's composed expression of the row "{alias}").
-- WHERE false: Postgres plans the expression (and refuses a cast it cannot do) but reads no row.
SELECT "{value}"
FROM "{table}" AS "{alias}"
WHERE false;
