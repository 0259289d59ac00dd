-- Application simulator: resolve a looked-up column (the seed's resolveProviderId(tenantId)).
SELECT "{value}"
FROM "{table}"
WHERE "{match}" = @match_value
LIMIT 1;
