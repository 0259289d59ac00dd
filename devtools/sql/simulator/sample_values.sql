-- Application simulator: distinct values of a column among recent rows (e.g. tenant ids to create
-- listings for); bounded by the key index, so it stays cheap on big tables.
SELECT DISTINCT recent."{column}"
FROM (
    SELECT "{column}" FROM "{table}" ORDER BY "{key}" DESC LIMIT @scan_limit
) AS recent
WHERE recent."{column}" IS NOT NULL
LIMIT @row_limit;
