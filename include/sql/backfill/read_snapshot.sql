-- Backfill, legacy side: the batch read and the range count after it see one snapshot, so the
-- count is exactly what the page was read from (the recheck compares it with a later count).
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;
