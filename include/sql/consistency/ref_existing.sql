-- Cross-database reference check, referenced side: which of the values @vals (the distinct
-- references of one chunk, as an array literal) exist in "{column}"; the caller reports the rest.
-- The literal takes the column's type (bigint, uuid, text), so the column's index answers it.
SELECT DISTINCT t."{column}"
FROM "{table}" AS t
WHERE t."{column}" = ANY(@vals);
