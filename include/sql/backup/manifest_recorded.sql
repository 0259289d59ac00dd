-- The backup.manifest ledger entry of one verified dump in one DAG run (the record step is
-- idempotent: a re-run that finds it writes nothing).
SELECT l.id
FROM "{schema}".audit_ledger AS l
WHERE l.action = 'backup.manifest'
  AND l.details ->> 'file' = @file
  AND l.details ->> 'sha256' = @sha256
  AND coalesce(l.details ->> 'run_id', '') = @run_id
ORDER BY l.id DESC
LIMIT 1;
