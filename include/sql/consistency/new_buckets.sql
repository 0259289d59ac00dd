-- New side of a range diff: count and checksum per sub-range (between the keys @boundaries, as
-- in old_buckets.sql) of the in-scope rows whose "{legacy_id}" (the old key) is in [@lo, @hi).
-- "{source}" is the new table, wrapped in expr/lookup_source.sql once per looked-up column;
-- "{values}" lists the new columns in the order of old_buckets.sql (a looked-up column as the old
-- value it stands for).
SELECT
    width_bucket(n."{legacy_id}", @boundaries) AS bucket,
    count(*) AS n,
    sum(('x' || left(md5(n."{legacy_id}"::text || row("{values}")::text), 16))::bit(64)::bigint) AS checksum
FROM "{source}" AS n
WHERE (@lo IS NULL OR n."{legacy_id}" >= @lo) AND (@hi IS NULL OR n."{legacy_id}" < @hi)
  AND n."{legacy_id}" IS NOT NULL
  AND (NOT @scoped OR n."{scope_column}"::text = ANY(@scope_values))
GROUP BY 1;
