-- Phase 5: the latest evaluation of each pre-cutover checklist gate in one DAG run.
SELECT DISTINCT ON (g.gate) g.gate, g.status, g.reason, g.figures
FROM "{schema}".gate_results AS g
WHERE g.gate = ANY(@gates) AND g.dag_id = @dag_id AND g.run_id = @run_id
ORDER BY g.gate, g.id DESC;
