-- Count parity: rows of one side where "{column}" IS NOT NULL (@is_not_null) or equals
-- @equals_text (compared as text, so booleans are 'true' / 'false').
SELECT count(*)
FROM "{table}" AS t
WHERE (@is_not_null AND t."{column}" IS NOT NULL)
   OR (NOT @is_not_null AND t."{column}"::text = @equals_text);
