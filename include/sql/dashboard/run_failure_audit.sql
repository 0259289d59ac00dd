-- Dashboard: why a failed DAG run failed: the ledger's failure entries written during that run
-- (a step's error, a verification that found problems). Bounded by the run's start and end on the
-- audit_ledger_time index, so a long ledger costs nothing.
SELECT at, actor, action, target, details, reason
FROM "{schema}".audit_ledger
WHERE
    at >= @since
    AND at <= @until
    AND details ->> 'dag_id' = @dag_id
    AND details ->> 'run_id' = @run_id
    AND (action LIKE '%failed' OR action LIKE '%refused%')
ORDER BY at DESC, id DESC
LIMIT 5;
