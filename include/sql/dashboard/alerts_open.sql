-- Dashboard: alerts that are still open (one row per deduplication key).
SELECT dedup_key, severity, title, last_text, occurrences, first_seen, last_seen, delivery_error
FROM "{schema}".alerts
WHERE status = 'open'
ORDER BY severity = 'critical' DESC, last_seen DESC
LIMIT @max_rows;
