-- Cross-database reference check, referenced side: which of the values @vals (the distinct
-- references of one chunk) do not exist in "{column}". Uses the referenced column's index.
SELECT v.val
FROM unnest(@vals) AS v (val)
WHERE NOT EXISTS (
    SELECT 1 FROM "{table}" AS t WHERE t."{column}" = v.val
)
ORDER BY v.val;
