-- Record (or, on a task retry, replace) one check's result in a run.
INSERT INTO "{schema}".consistency_check_results AS r (
    run_pk, check_name, check_kind, status, old_count, new_count, counts, sample, message, duration_s
)
VALUES (
    @run_pk, @check_name, @check_kind, @status, @old_count, @new_count, @counts::jsonb, @sample::jsonb,
    @message, @duration_s
)
ON CONFLICT (run_pk, check_name) DO UPDATE SET
    check_kind = excluded.check_kind,
    status = excluded.status,
    old_count = excluded.old_count,
    new_count = excluded.new_count,
    counts = excluded.counts,
    sample = excluded.sample,
    message = excluded.message,
    duration_s = excluded.duration_s,
    recorded_at = now();
