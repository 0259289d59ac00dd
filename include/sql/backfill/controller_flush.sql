-- A range that finishes takes the decisions not yet in the ledger (however short the pass was).
UPDATE "{schema}".backfill_controller AS c
SET counts = '{}', ledger_at = clock_timestamp(), updated_at = clock_timestamp()
FROM "{schema}".backfill_controller AS old
WHERE c.run_id = @run_id AND old.run_id = c.run_id AND c.counts <> '{}' AND c.last_decision IS NOT NULL
RETURNING old.counts, c.last_decision;
