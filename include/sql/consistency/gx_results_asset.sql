-- Great Expectations query asset: the diff engine's result row of one check in one run (GX cannot
-- join across servers, so cross-database suites validate what the engine measured on each side).
SELECT check_name, status, old_count, new_count
FROM "{schema}".consistency_check_results
WHERE run_pk = @run_pk AND check_name = @check_name;
