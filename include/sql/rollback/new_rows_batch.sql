-- Rollback scenario 3, forward sync: the next batch of new-table rows in key order (keyset
-- pagination: the key's index makes every batch cheap, however far in). "{columns}" is the
-- composed list of the mapped new columns, then the old values of transformed columns computed
-- here from the row "n" (migration_engine.transforms.inverse: cents / 100, a cast back, a reviewed
-- inverse file); @after is the last key of the previous batch.
SELECT "{new_key}", "{legacy_id}", "{columns}"
FROM "{table}" AS n
WHERE @first_batch OR "{new_key}" > @after
ORDER BY "{new_key}"
LIMIT @batch_size;
