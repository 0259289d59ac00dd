-- Rollback scenario 3: undo a looked-up column (the seed's resolveProviderId(tenantId)): the
-- lookup table maps "{match}" (old value) to "{value}" (new value); read it the other way round.
SELECT "{value}", "{match}"
FROM "{table}"
WHERE "{value}" = ANY(@new_values);
