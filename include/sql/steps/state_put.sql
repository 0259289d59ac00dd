-- Record a step's status. details is merged into what is stored, so the "before" state captured
-- by the first apply survives later applies, verifications and failures.
INSERT INTO "{schema}".step_state AS s (step_id, phase, status, last_sql, details, updated_at)
VALUES (@step_id, @phase, @status, @last_sql, @details::jsonb, now())
ON CONFLICT (step_id) DO UPDATE
SET phase = excluded.phase,
    status = excluded.status,
    last_sql = CASE WHEN excluded.last_sql = '' THEN s.last_sql ELSE excluded.last_sql END,
    details = s.details || excluded.details,
    updated_at = now();
