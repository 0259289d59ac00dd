-- Forget requests older than the retention (replays that old fail the timestamp check anyway).
DELETE FROM "{schema}".slack_requests
WHERE request_ts < @older_than;
