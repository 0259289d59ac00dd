SELECT step_id, phase, status, last_sql, details, updated_at
FROM "{schema}".step_state
WHERE phase = @phase
ORDER BY step_id;
