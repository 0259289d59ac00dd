-- Gate building block: totals over a rolling window from one per-minute stats table of the control
-- schema (dual_write_stats, shadow_read_stats, path_stats, ...), and the stretches of the window
-- that have no data. Missing data must never look like success, so the caller fails closed on
-- gaps longer than @max_gap and on too few events.
--   "{total}" / "{bad}": the count columns (e.g. attempts / failures).
--   @filters: jsonb the row must contain, e.g. {"entity": "listings", "operation": "write"}.
--   A bucket counts as data only when its total is > 0; @bucket_width is the stats granularity.
--   Buckets overlapping the window count (a window shorter than a bucket - rehearsals with a
--   small time_scale - still sees the current minute); a stretch is a gap only inside the window.
WITH per_bucket AS (
    SELECT s.bucket, sum(s."{total}") AS total, sum(s."{bad}") AS bad
    FROM "{schema}"."{table}" AS s
    WHERE s.bucket > @window_start::timestamptz - @bucket_width::interval
      AND s.bucket < @window_end::timestamptz
      AND to_jsonb(s) @> @filters::jsonb
    GROUP BY s.bucket
    HAVING sum(s."{total}") > 0
),

ordered AS (
    SELECT bucket, lag(bucket) OVER (ORDER BY bucket) AS prev_bucket
    FROM per_bucket
),

gaps AS (
    -- before each bucket: from the end of the previous one (or the window start)
    SELECT
        greatest(coalesce(prev_bucket + @bucket_width::interval, @window_start::timestamptz),
                 @window_start::timestamptz) AS gap_start,
        bucket AS gap_end
    FROM ordered
    UNION ALL
    -- after the last bucket (or the whole window when there is none) until the window end
    SELECT
        greatest(coalesce(max(bucket) + @bucket_width::interval, @window_start::timestamptz),
                 @window_start::timestamptz) AS gap_start,
        @window_end::timestamptz AS gap_end
    FROM per_bucket
),

long_gaps AS (
    SELECT gap_start, gap_end
    FROM gaps
    WHERE gap_end - gap_start > @max_gap::interval
    ORDER BY gap_end - gap_start DESC, gap_start
    LIMIT 10
)

SELECT
    (SELECT coalesce(sum(total), 0) FROM per_bucket)::bigint AS total,
    (SELECT coalesce(sum(bad), 0) FROM per_bucket)::bigint AS bad,
    (SELECT count(*) FROM per_bucket)::bigint AS buckets,
    (SELECT min(bucket) FROM per_bucket) AS first_bucket,
    (SELECT max(bucket) FROM per_bucket) AS last_bucket,
    (SELECT extract(EPOCH FROM greatest(max(gap_end - gap_start), interval '0')) FROM gaps)::float8
        AS largest_gap_seconds,
    (SELECT coalesce(jsonb_agg(jsonb_build_array(gap_start, gap_end) ORDER BY gap_start), '[]'::jsonb)
        FROM long_gaps) AS long_gaps;
