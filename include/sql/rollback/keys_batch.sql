-- Rollback scenario 3 verification: the next batch of keys of a table (keyset pagination).
SELECT "{key}"
FROM "{table}"
WHERE @first_batch OR "{key}" > @after
ORDER BY "{key}"
LIMIT @batch_size;
