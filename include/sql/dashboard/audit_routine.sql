-- Dashboard: routine progress entries (@routine_actions: *_progress, *_throttle) since @since, one row per action and
-- target with how many there were and the newest one's reason and details (audit_ledger_time index).
SELECT
    action,
    target,
    count(*) AS entries,
    min(at) AS first_at,
    max(at) AS last_at,
    (array_agg(reason ORDER BY at DESC, id DESC))[1] AS latest_reason,
    (array_agg(details ORDER BY at DESC, id DESC))[1] AS latest_details
FROM "{schema}".audit_ledger
WHERE at >= @since AND action ~ @routine_actions
GROUP BY action, target
ORDER BY max(at) DESC
LIMIT @max_rows;
