-- Did the hold's trigger already roll this step back (read_new_pct = 0, ledger entry written by
-- the check that saw the breach) since the hold started? A retried task must then report and fail
-- the run - never set the flag back up to the step's percentage.
SELECT details, reason
FROM "{schema}".audit_ledger
WHERE action = 'read_rollout.rolled_back'
  AND target = @target
  AND details ->> 'run_id' IS NOT DISTINCT FROM @run_id
  AND details ->> 'task_id' IS NOT DISTINCT FROM @task_id
  AND at >= @since
ORDER BY id DESC
LIMIT 1;
