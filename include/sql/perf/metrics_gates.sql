-- The latest evaluation of every gate (for the gate-status metrics).
SELECT DISTINCT ON (gate) gate, status, evaluated_at
FROM "{schema}".gate_results
ORDER BY gate, evaluated_at DESC, id DESC
