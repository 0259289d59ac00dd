-- Phase 6 drop readiness: the current streak of passed full consistency runs (since the latest run
-- that did not pass): when it started, its latest run, how many, and its longest gap between runs.
WITH runs AS (
    SELECT r.status, r.finished_at
    FROM "{schema}".consistency_runs AS r
    WHERE r.kind = ANY(@kinds) AND r.finished_at IS NOT NULL AND r.finished_at <= @now::timestamptz
),

last_bad AS (
    SELECT max(finished_at) AS at FROM runs WHERE status <> 'passed'
),

streak AS (
    SELECT
        finished_at,
        finished_at - lag(finished_at) OVER (ORDER BY finished_at) AS gap
    FROM runs
    WHERE status = 'passed'
      AND finished_at > coalesce((SELECT at FROM last_bad), '-infinity'::timestamptz)
)

SELECT
    (SELECT at FROM last_bad) AS last_not_passed,
    min(finished_at) AS streak_start,
    max(finished_at) AS streak_last,
    count(*)::bigint AS runs,
    extract(EPOCH FROM max(gap))::float8 AS max_gap_s
FROM streak;
