-- Gate building block: latency over a rolling window from a per-minute stats table whose rows carry
-- a p95 per (bucket, instance). The window p95 is estimated as the event-weighted 95th percentile
-- of those per-row p95 values (a single slow minute among sixty does not trip it; a slow quarter
-- of the traffic does); the worst per-row p95 is returned as well.
WITH samples AS (
    SELECT s."{latency}"::float8 AS p95, s."{total}"::float8 AS weight
    FROM "{schema}"."{table}" AS s
    WHERE s.bucket > @window_start::timestamptz - @bucket_width::interval
      AND s.bucket < @window_end::timestamptz
      AND to_jsonb(s) @> @filters::jsonb
      AND s."{latency}" IS NOT NULL
      AND s."{total}" > 0
),

ranked AS (
    SELECT
        p95,
        sum(weight) OVER (ORDER BY p95 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS running,
        sum(weight) OVER () AS all_weight
    FROM samples
)

SELECT
    (SELECT min(p95) FROM ranked WHERE running >= @percentile::float8 * all_weight) AS weighted_p95,
    (SELECT max(p95) FROM samples) AS max_p95,
    (SELECT count(*) FROM samples)::bigint AS samples;
