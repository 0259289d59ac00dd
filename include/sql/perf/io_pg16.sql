-- PostgreSQL 16+: cluster-wide I/O by operation from pg_stat_io (blocks of op_bytes each).
SELECT coalesce(sum(reads), 0)::bigint AS reads,
       coalesce(sum(writes), 0)::bigint AS writes,
       coalesce(sum(extends), 0)::bigint AS extends,
       coalesce(sum(hits), 0)::bigint AS hits,
       coalesce(sum(evictions), 0)::bigint AS evictions,
       coalesce(sum(fsyncs), 0)::bigint AS fsyncs,
       coalesce(max(op_bytes), 8192)::bigint AS op_bytes
FROM pg_stat_io
