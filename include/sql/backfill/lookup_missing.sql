-- Backfill plan, new side: which old values have no row in the lookup table (their rows would get
-- NULL in the looked-up column). The values arrive as text and are compared as text.
SELECT v.old_value
FROM unnest(@old_values::text[]) AS v (old_value)
WHERE NOT EXISTS (
    SELECT 1 FROM "{lookup_schema}"."{lookup_table}" AS lk WHERE lk."{match}"::text = v.old_value
)
ORDER BY v.old_value
LIMIT 20;
