-- Rollback scenario 3: a new old-table key for a row created after the cutover, when the old key is
-- a uuid without a sequence (PostgreSQL 13+). The sync checks it is free before using it.
SELECT gen_random_uuid();
