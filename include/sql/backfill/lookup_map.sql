-- Backfill, new side, when a range starts (direct COPY path): the lookup table as (match, value) text
-- pairs, so the legacy SELECT can resolve the looked-up column itself and the batch can be COPY'd
-- straight into the target. Bounded: the engine asks for one entry more than its limit
-- (backfill.direct_copy_max_lookup_entries) and copies through the stage when it gets it. Pairs
-- with a NULL match or value are left out: a legacy value that finds no entry sends its batch the
-- staged path, which resolves it in the target as always (and writes NULL where that finds none).
SELECT lk."{match}"::text AS match_value, lk."{value}"::text AS lookup_value
FROM "{lookup_schema}"."{lookup_table}" AS lk
WHERE lk."{match}" IS NOT NULL
  AND lk."{value}" IS NOT NULL
LIMIT @max_entries;
