-- Application simulator: read one row by a key ("{columns}" is the composed column list).
SELECT "{columns}"
FROM "{table}"
WHERE "{match}" = @match_value;
