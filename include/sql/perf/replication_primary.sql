-- Replicas streaming from this server: their lag as time and as WAL bytes not yet replayed.
SELECT application_name,
       state,
       EXTRACT(EPOCH FROM replay_lag)::double precision AS replay_lag_seconds,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint AS replay_lag_bytes
FROM pg_stat_replication
ORDER BY application_name
