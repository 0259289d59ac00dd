-- A decision, compare-and-set on the decision count the range read: when another range decided in
-- between, no row comes back and this range paces at that one's rate instead. @ledgered: this decision
-- also wrote the backfill_throttle ledger entry (the counts start over).
UPDATE "{schema}".backfill_controller
SET rows_per_second = @rate, state = @state, decisions = decisions + 1, decided_at = clock_timestamp(),
    decided_by = @range_no, last_decision = @decision, counts = @counts,
    ledger_at = CASE WHEN @ledgered THEN clock_timestamp() ELSE ledger_at END,
    updated_at = clock_timestamp()
WHERE run_id = @run_id AND decisions = @seen
RETURNING decisions;
