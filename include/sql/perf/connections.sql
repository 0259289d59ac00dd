-- Connections of the whole cluster (max_connections is cluster-wide) and of this database, by state.
-- pg_stat_activity lists every session to any role; only the query text needs pg_read_all_stats.
SELECT count(*) FILTER (WHERE backend_type = 'client backend') AS cluster_clients,
       count(*) FILTER (WHERE backend_type = 'client backend' AND datname = current_database()) AS database_clients,
       count(*) FILTER (WHERE backend_type = 'client backend' AND datname = current_database()
                        AND state = 'active') AS active,
       count(*) FILTER (WHERE backend_type = 'client backend' AND datname = current_database()
                        AND state IN ('idle in transaction', 'idle in transaction (aborted)')) AS idle_in_transaction,
       count(*) FILTER (WHERE backend_type = 'client backend' AND datname = current_database()
                        AND wait_event_type = 'Lock') AS waiting_on_locks
FROM pg_stat_activity
