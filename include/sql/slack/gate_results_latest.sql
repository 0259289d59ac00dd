-- The latest evaluation of each named gate (the figures an approval request shows).
SELECT DISTINCT ON (gate) gate, status, figures, reason, evaluated_at
FROM "{schema}".gate_results
WHERE gate = ANY(@gates)
ORDER BY gate, evaluated_at DESC;
