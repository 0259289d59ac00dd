-- Dashboard: the newest audit ledger entries (audit_ledger_time index).
SELECT id, at, actor, action, target, details, reason
FROM "{schema}".audit_ledger
ORDER BY at DESC, id DESC
LIMIT @max_rows;
