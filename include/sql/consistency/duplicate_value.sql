-- One value of "{column}" that occurs more than once (none: the column is unique). A lookup
-- compared in reverse (new value -> old value) must be one-to-one.
SELECT t."{column}"
FROM "{table}" AS t
WHERE t."{column}" IS NOT NULL
GROUP BY t."{column}"
HAVING count(*) > 1
LIMIT 1;
