-- Record an occurrence of an open alert. The caller holds the key's advisory lock and computed
-- occurrences / first_seen from alerts/get.sql, so plain overwrites cannot lose a concurrent update.
-- conditions: the gates the alert reports (jsonb array; NULL: resolved only by its own sender).
-- channel / slack_ts: the Slack message that represents the alert (channel id as Slack returned it).
INSERT INTO "{schema}".alerts AS a (
    dedup_key, severity, status, channel, slack_ts, title, last_text, occurrences, delivery_error,
    first_seen, last_seen, resolved_at, conditions
)
VALUES (
    @dedup_key, @severity, 'open', @channel, @slack_ts, @title, @last_text, @occurrences, @delivery_error,
    COALESCE(@first_seen::timestamptz, now()), now(), NULL, @conditions::jsonb
)
ON CONFLICT (dedup_key) DO UPDATE SET
    severity = EXCLUDED.severity,
    status = 'open',
    channel = EXCLUDED.channel,
    slack_ts = EXCLUDED.slack_ts,
    title = EXCLUDED.title,
    last_text = EXCLUDED.last_text,
    occurrences = EXCLUDED.occurrences,
    delivery_error = EXCLUDED.delivery_error,
    first_seen = EXCLUDED.first_seen,
    last_seen = EXCLUDED.last_seen,
    resolved_at = NULL,
    conditions = EXCLUDED.conditions
RETURNING occurrences, first_seen;
