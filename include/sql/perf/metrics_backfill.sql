-- Each entity's latest backfill pass: its progress and current copy rate (running ranges).
SELECT DISTINCT ON (r.entity) r.entity, r.id AS run_id, r.status, r.rows_total,
       coalesce(g.rows_read, 0)::bigint AS rows_read, coalesce(g.rows_written, 0)::bigint AS rows_written,
       coalesce(g.rows_per_second, 0)::double precision AS rows_per_second,
       coalesce(g.ranges, 0)::bigint AS ranges, coalesce(g.ranges_done, 0)::bigint AS ranges_done
FROM "{schema}".backfill_runs AS r
LEFT JOIN LATERAL (
    SELECT sum(rows_read) AS rows_read, sum(rows_written) AS rows_written,
           sum(rows_per_second) FILTER (WHERE status = 'running') AS rows_per_second,
           count(*) AS ranges, count(*) FILTER (WHERE status = 'done') AS ranges_done
    FROM "{schema}".backfill_ranges
    WHERE run_id = r.id
) AS g ON true
ORDER BY r.entity, r.created_at DESC, r.id DESC
