-- Cross-database reference check, referencing side: the non-NULL references of the rows whose
-- primary key is in [@lo, @hi) (one key-range chunk; never the whole table).
SELECT f."{pk}", f."{column}"
FROM "{table}" AS f
WHERE f."{pk}" >= @lo AND f."{pk}" < @hi
  AND f."{column}" IS NOT NULL
ORDER BY f."{pk}";
