-- One database's sample (figures as jsonb), and its tables' rows in the same statement.
WITH sample AS (
    INSERT INTO "{schema}".perf_samples
        (db, sampled_at, database_name, server_version_num, figures, unavailable, latency_source, dag_id, run_id)
    VALUES (@db, @sampled_at, @database_name, @server_version_num, @figures::jsonb, @unavailable::jsonb,
            @latency_source, @dag_id, @run_id)
    RETURNING db, sampled_at
)
INSERT INTO "{schema}".perf_table_samples
    (db, sampled_at, table_name, calls, mean_ms, p50_ms, p95_ms, p99_ms, statements, total_bytes, live_rows,
     seq_scans, index_scans, buffer_hit_pct, index_hit_pct)
SELECT sample.db, sample.sampled_at, r.table_name, r.calls, r.mean_ms, r.p50_ms, r.p95_ms, r.p99_ms,
       r.statements, r.total_bytes, r.live_rows, r.seq_scans, r.index_scans, r.buffer_hit_pct, r.index_hit_pct
FROM sample
CROSS JOIN jsonb_to_recordset(@tables::jsonb) AS r(
    table_name text, calls bigint, mean_ms double precision, p50_ms double precision, p95_ms double precision,
    p99_ms double precision, statements bigint, total_bytes bigint, live_rows bigint, seq_scans bigint,
    index_scans bigint, buffer_hit_pct double precision, index_hit_pct double precision)
