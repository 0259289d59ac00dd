-- Upper key of the next batch: walks the key's index, so sparse keys cost nothing extra.
-- @after is NULL for the first batch (Postgres folds the constant test away).
SELECT max(batch.k)
FROM (
    SELECT "{key}" AS k
    FROM "{schema}"."{table}"
    WHERE (@after IS NULL OR "{key}" > @after)
    ORDER BY "{key}"
    LIMIT @batch_size
) AS batch;
