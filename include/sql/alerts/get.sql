-- The dedup state of one alert key (read under alerts/lock.sql).
SELECT status, severity, channel, slack_ts, title, last_text, occurrences, first_seen
FROM "{schema}".alerts
WHERE dedup_key = @dedup_key;
