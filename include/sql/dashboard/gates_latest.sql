-- Dashboard: the latest evaluation of every gate. gate_results grows by one row per evaluation
-- (every minute, for weeks), so instead of DISTINCT ON over the whole table this walks the
-- (gate, evaluated_at DESC) index: one probe per distinct gate, one probe for its latest row.
WITH RECURSIVE gates AS (
    (SELECT gate FROM "{schema}".gate_results ORDER BY gate LIMIT 1)
    UNION ALL
    SELECT (
        SELECT g.gate FROM "{schema}".gate_results AS g
        WHERE g.gate > gates.gate
        ORDER BY g.gate
        LIMIT 1
    )
    FROM gates
    WHERE gates.gate IS NOT NULL
)
SELECT latest.gate, latest.status, latest.figures, latest.reason, latest.dag_id, latest.run_id,
       latest.evaluated_at
FROM gates
CROSS JOIN LATERAL (
    SELECT r.gate, r.status, r.figures, r.reason, r.dag_id, r.run_id, r.evaluated_at
    FROM "{schema}".gate_results AS r
    WHERE r.gate = gates.gate
    ORDER BY r.evaluated_at DESC
    LIMIT 1
) AS latest
WHERE gates.gate IS NOT NULL
ORDER BY latest.gate;
