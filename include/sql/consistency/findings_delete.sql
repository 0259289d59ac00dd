-- Forget a check's findings in a run before (re)writing them (task retries stay idempotent).
DELETE FROM "{schema}".consistency_findings
WHERE run_pk = @run_pk AND check_name = @check_name;
