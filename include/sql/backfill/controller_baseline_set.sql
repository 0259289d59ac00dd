-- The claiming range stores the baseline and the controller's initial state (only if its claim stands).
UPDATE "{schema}".backfill_controller
SET baseline = @baseline, baseline_at = clock_timestamp(), state = @state, rows_per_second = @rate,
    ledger_at = clock_timestamp(), updated_at = clock_timestamp()
WHERE run_id = @run_id AND baseline_by = @range_no AND baseline IS NULL
RETURNING run_id;
