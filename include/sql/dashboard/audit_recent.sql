-- Dashboard: the newest audit ledger entries that are not routine progress reports (audit_ledger_time
-- index). Routine ones (*_progress, *_throttle: about one a minute per range while a copy runs) would
-- push every approval and refusal off the list; audit_routine.sql summarises them instead.
SELECT id, at, actor, action, target, details, reason
FROM "{schema}".audit_ledger
WHERE action !~ @routine_actions
ORDER BY at DESC, id DESC
LIMIT @max_rows;
