-- Close an open alert; the next occurrence of the key starts a new alert (and pages again).
UPDATE "{schema}".alerts
SET status = 'resolved', resolved_at = now(), last_seen = now(), delivery_error = @delivery_error
WHERE dedup_key = @dedup_key AND status = 'open'
RETURNING occurrences, first_seen, resolved_at;
