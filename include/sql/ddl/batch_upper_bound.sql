-- Upper key of the next batch: walks the key's index, so sparse keys cost nothing extra.
-- The last of the next @batch_size keys in key order (ORDER BY ... DESC LIMIT 1 over the page, not
-- max(): max() does not exist for uuid); any btree-orderable key type (migration_engine/keys.py).
-- Always one row: NULL when no key is left.
-- @after is NULL for the first batch (Postgres folds the constant test away).
SELECT (
    SELECT batch.k
    FROM (
        SELECT "{key}" AS k
        FROM "{schema}"."{table}"
        WHERE (@after IS NULL OR "{key}" > @after)
        ORDER BY "{key}"
        LIMIT @batch_size
    ) AS batch
    ORDER BY batch.k DESC
    LIMIT 1
) AS upto;
