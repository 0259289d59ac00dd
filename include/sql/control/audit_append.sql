INSERT INTO "{schema}".audit_ledger (actor, action, target, details, reason)
VALUES (@actor, @action, @target, @details::jsonb, @reason)
RETURNING id, at;
