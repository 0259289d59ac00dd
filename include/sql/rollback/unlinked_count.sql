-- Rollback scenario 3: new-table rows without an old key (created after the cutover while
-- keep_old_sync was off).
SELECT count(*) FROM "{table}" WHERE "{legacy_id}" IS NULL;
