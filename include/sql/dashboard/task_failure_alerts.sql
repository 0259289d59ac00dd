-- Dashboard: the failure alerts the task callbacks recorded for these tasks (primary-key lookups);
-- their text holds the task's exception.
SELECT dedup_key, last_text, last_seen
FROM "{schema}".alerts
WHERE dedup_key = ANY(@keys);
