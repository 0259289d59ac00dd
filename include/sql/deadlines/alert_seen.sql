-- Whether an alert key was ever sent (open or resolved): a reminder is sent once per request and step.
SELECT status FROM "{schema}".alerts WHERE dedup_key = @dedup_key;
