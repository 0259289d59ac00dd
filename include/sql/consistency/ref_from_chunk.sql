-- Cross-database reference check, referencing side: the non-NULL references of the rows whose
-- primary key is in [@lo, @hi) (one chunk, NULL bound: unbounded; never the whole table). The
-- bounds are text literals resolved against the key column, so any btree-orderable key works.
SELECT f."{pk}", f."{column}"
FROM "{table}" AS f
WHERE (@lo IS NULL OR f."{pk}" >= @lo) AND (@hi IS NULL OR f."{pk}" < @hi)
  AND f."{column}" IS NOT NULL
ORDER BY f."{pk}";
