-- PostgreSQL 15 (no pg_stat_io): this database's block reads and hits from pg_statio_user_tables
-- (heap, index, TOAST) and the cluster's buffer writes from pg_stat_bgwriter.
SELECT (SELECT coalesce(sum(coalesce(heap_blks_read, 0) + coalesce(idx_blks_read, 0)
                            + coalesce(toast_blks_read, 0) + coalesce(tidx_blks_read, 0)), 0)
        FROM pg_statio_user_tables)::bigint AS reads,
       (SELECT coalesce(sum(coalesce(heap_blks_hit, 0) + coalesce(idx_blks_hit, 0)
                            + coalesce(toast_blks_hit, 0) + coalesce(tidx_blks_hit, 0)), 0)
        FROM pg_statio_user_tables)::bigint AS hits,
       (SELECT buffers_checkpoint + buffers_clean + buffers_backend FROM pg_stat_bgwriter)::bigint AS writes,
       current_setting('block_size')::bigint AS op_bytes
