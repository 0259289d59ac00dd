-- Great Expectations query asset: the diff engine's findings of some checks in one run.
SELECT check_name, kind, entity_key, columns
FROM "{schema}".consistency_findings
WHERE run_pk = @run_pk AND check_name = ANY(@check_names);
