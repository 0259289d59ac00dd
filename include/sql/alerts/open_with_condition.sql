-- Open alerts that reported @gate as one of their conditions, each with the conditions whose latest
-- evaluation (any run) is not passed yet: an empty list means every condition cleared.
SELECT
    a.dedup_key,
    coalesce(array_agg(c.gate ORDER BY c.gate) FILTER (WHERE coalesce(latest.status, 'none') <> 'passed'),
             '{}') AS pending
FROM "{schema}".alerts AS a
CROSS JOIN LATERAL jsonb_array_elements_text(a.conditions) AS c (gate)
LEFT JOIN LATERAL (
    SELECT g.status FROM "{schema}".gate_results AS g
    WHERE g.gate = c.gate
    ORDER BY g.id DESC
    LIMIT 1
) AS latest ON true
WHERE a.status = 'open' AND a.conditions ? @gate
GROUP BY a.dedup_key;
