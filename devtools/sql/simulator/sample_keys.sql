-- Application simulator: recent keys to read and update. Only rows in the migration scope (the
-- seed migrates ACTIVE listings) unless @all_rows; the key index makes this cheap on big tables.
SELECT "{key}"
FROM "{table}"
WHERE @all_rows OR "{scope_column}"::text = ANY(@scope_values)
ORDER BY "{key}" DESC
LIMIT @row_limit;
