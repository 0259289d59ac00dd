-- Close a consistency run with its verdict and summary.
UPDATE "{schema}".consistency_runs
SET status = @status,
    finished_at = now(),
    failed_checks = @failed_checks,
    summary = @summary::jsonb,
    data_docs = coalesce(@data_docs, data_docs)
WHERE id = @run_pk
RETURNING id, kind, status, started_at, finished_at;
