-- Backfill throttle: replication lag of this primary's replicas (no rows: no replicas, no lag).
SELECT
    count(*)::bigint AS replicas,
    extract(EPOCH FROM max(coalesce(r.replay_lag, r.flush_lag, r.write_lag)))::float8 AS lag_seconds
FROM pg_stat_replication AS r;
