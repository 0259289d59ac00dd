-- Buffer hit rate and I/O of this database since its statistics were last reset (cumulative).
SELECT d.blks_hit, d.blks_read, d.tup_returned, d.tup_fetched, d.xact_commit, d.xact_rollback,
       d.deadlocks, d.temp_bytes, d.blk_read_time, d.blk_write_time,
       (SELECT coalesce(sum(idx_blks_hit), 0) FROM pg_statio_user_indexes)::bigint AS idx_blks_hit,
       (SELECT coalesce(sum(idx_blks_read), 0) FROM pg_statio_user_indexes)::bigint AS idx_blks_read
FROM pg_stat_database AS d
WHERE d.datname = current_database()
