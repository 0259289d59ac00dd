-- The start of one wait (gate, read-rollout hold, recovery watch) in this series of tries of one
-- task instance: a retried try reads its deadline / hold end back from here instead of starting
-- the wait over. A cleared task starts a new series (a new first_try), so it waits afresh.
SELECT details, at
FROM "{schema}".audit_ledger
WHERE action = 'wait.started'
  AND target = @target
  AND details ->> 'first_try' = @first_try
ORDER BY id DESC
LIMIT 1;
