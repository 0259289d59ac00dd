-- The latest archive record of one archived table in the append-only audit ledger.
SELECT l.id, l.at, l.details
FROM "{schema}".audit_ledger AS l
WHERE l.action = 'cleanup.archived'
  AND l.target = @target
ORDER BY l.id DESC
LIMIT 1;
