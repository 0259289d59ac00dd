-- Backfill throttle: replication lag from an operator-provided function (a managed service's lag
-- view, a heartbeat table) returning (replicas bigint, lag_seconds float8), configured as
-- backfill.throttle.signals.<side>_replication_lag_function.
SELECT f.replicas::bigint AS replicas, f.lag_seconds::float8 AS lag_seconds
FROM "{lag_schema}"."{lag_function}"() AS f (replicas, lag_seconds);
