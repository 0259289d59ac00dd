-- Read rollout / rollbacks: cumulative request and error counts per path (old/new) of one
-- operation (read/write) for the given entities, summed over every minute bucket since @since,
-- with the element-wise sum of the latency histograms (NULL when no row carries one).
-- The stats are additive upserts, so the difference between two of these snapshots is exactly
-- what the application reported between them - whatever the check interval, even under a minute.
WITH stats AS (
    SELECT s.path, s.requests, s.errors, s.latency_histogram
    FROM "{schema}".path_stats AS s
    WHERE s.operation = @operation
      AND s.entity = ANY(@entities)
      AND s.bucket >= @since::timestamptz
),

hist AS (
    SELECT st.path, h.i, sum(h.n)::bigint AS n
    FROM stats AS st
    CROSS JOIN LATERAL unnest(st.latency_histogram) WITH ORDINALITY AS h (n, i)
    GROUP BY st.path, h.i
)

SELECT
    t.path,
    coalesce(sum(t.requests), 0)::bigint AS requests,
    coalesce(sum(t.errors), 0)::bigint AS errors,
    (SELECT array_agg(hist.n ORDER BY hist.i) FROM hist WHERE hist.path = t.path) AS latency_histogram
FROM stats AS t
GROUP BY t.path;
