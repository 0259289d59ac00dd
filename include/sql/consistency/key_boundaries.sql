-- Range splitting on any btree-orderable key: every @every-th key of the rows in [@lo, @hi) in
-- "{key}" order (NULL bounds: unbounded), read from the key's index. The diff cuts chunks and
-- checksum sub-ranges at these keys (width_bucket in old_buckets.sql / new_buckets.sql), so a
-- range holds about @every rows whatever the key's type or density.
SELECT s.k
FROM (
    SELECT
        t."{key}" AS k,
        row_number() OVER (ORDER BY t."{key}") AS rn
    FROM "{table}" AS t
    WHERE t."{key}" IS NOT NULL
      AND (@lo IS NULL OR t."{key}" >= @lo)
      AND (@hi IS NULL OR t."{key}" < @hi)
) AS s
WHERE s.rn % @every = 0
ORDER BY s.k;
