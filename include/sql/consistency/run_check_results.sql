-- Every check result of one run.
SELECT check_name, check_kind, status, old_count, new_count, counts, sample, message, duration_s
FROM "{schema}".consistency_check_results
WHERE run_pk = @run_pk
ORDER BY check_kind, check_name;
