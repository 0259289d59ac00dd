-- Verified pre-flight backups (migration_engine.backup.record_manifest writes one 'backup.manifest'
-- ledger entry per verified dump), newest first, optionally only those whose snapshot was taken
-- before @before (the write cutover point, for rollback scenario 3).
SELECT l.id, l.at, l.details
FROM "{schema}".audit_ledger AS l
WHERE l.action = 'backup.manifest'
  AND (@before::timestamptz IS NULL OR (l.details ->> 'snapshot_taken_at')::timestamptz < @before::timestamptz)
ORDER BY (l.details ->> 'snapshot_taken_at')::timestamptz DESC, l.id DESC
LIMIT @max_rows;
