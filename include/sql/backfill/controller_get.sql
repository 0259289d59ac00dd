-- The pass's controller as a range sees it: decided rate, state, baseline, whether a decision is due
-- (none yet, or the last one over @interval_seconds ago), the ranges still copying (running with a
-- heartbeat within @stale_seconds) and their achieved rate, whether a ledger entry is due.
SELECT c.rows_per_second, c.state, c.baseline, c.decisions,
       c.decided_at IS NULL OR c.decided_at <= clock_timestamp() - make_interval(secs => @interval_seconds)
           AS due,
       r.copying, r.achieved, c.counts,
       c.ledger_at IS NULL OR c.ledger_at <= clock_timestamp() - make_interval(secs => @ledger_seconds)
           AS ledger_due,
       c.baseline_by
FROM "{schema}".backfill_controller AS c
CROSS JOIN LATERAL (
    SELECT count(*) AS copying, coalesce(sum(g.rows_per_second), 0) AS achieved
    FROM "{schema}".backfill_ranges AS g
    WHERE g.run_id = c.run_id AND g.status = 'running'
      AND g.heartbeat_at > clock_timestamp() - make_interval(secs => @stale_seconds)
) AS r
WHERE c.run_id = @run_id;
