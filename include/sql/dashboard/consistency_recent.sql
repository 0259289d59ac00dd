-- Dashboard: the newest consistency-check runs, whole rows as JSON. The table belongs to the
-- consistency DAG; "{time_column}" is the first of its known timestamp columns that exists.
SELECT to_jsonb(r) AS run
FROM "{schema}"."{table}" AS r
WHERE r."{time_column}" >= @window_start
ORDER BY r."{time_column}" DESC
LIMIT @max_rows;
