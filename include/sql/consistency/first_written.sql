-- The diff's re-check (migration_engine/consistency/dating.py): which database the application
-- writes first. The latest change of the write_to_new flag in the append-only audit ledger
-- (control.set_flag writes the flag and this row in one transaction), and whether it is older than
-- @settle (flag propagation plus recheck_delay: every application instance writes the new way).
-- No row: writes never moved (the old database is written first).
SELECT
    l.details -> 'new' = 'true'::jsonb AS to_new,
    l.at < now() - @settle::interval AS settled,
    l.at
FROM "{schema}".audit_ledger AS l
WHERE l.action = 'set_flag'
  AND l.target = 'write_to_new'
ORDER BY l.id DESC
LIMIT 1;
