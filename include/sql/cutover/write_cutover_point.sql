-- The write cutover point: the latest switch of the write_to_new flag to true, read from the
-- append-only audit ledger (control.set_flag writes the flag and this row in one transaction).
SELECT l.id, l.at, l.actor, l.details
FROM "{schema}".audit_ledger AS l
WHERE l.action = 'set_flag'
  AND l.target = 'write_to_new'
  AND l.details -> 'new' = 'true'::jsonb
ORDER BY l.id DESC
LIMIT 1;
