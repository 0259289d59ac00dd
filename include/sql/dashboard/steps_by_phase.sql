-- Dashboard: every recorded migration step (step_state is small: one row per step).
SELECT phase, step_id, status, updated_at
FROM "{schema}".step_state
ORDER BY phase, step_id;
