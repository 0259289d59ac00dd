-- Write and read counters of the given tables from pg_stat_user_tables, and when this database's
-- statistics were last reset. The counters only grow (until a reset), so two readings that agree
-- prove no row was inserted, updated or deleted in between. Counters follow the table's OID, so a
-- rename keeps them. @names are regclass-ready qualified names ('"public"."marketplace_listings"').
-- Statistics are cached per transaction: run this in a fresh transaction each time.
SELECT
    q.name,
    s.relid IS NOT NULL AS present,
    s.relid::bigint AS relid,
    (coalesce(s.n_tup_ins, 0) + coalesce(s.n_tup_upd, 0) + coalesce(s.n_tup_del, 0))::bigint AS writes,
    (coalesce(s.seq_scan, 0) + coalesce(s.idx_scan, 0))::bigint AS scans,
    (SELECT d.stats_reset FROM pg_stat_database AS d WHERE d.datname = current_database()) AS stats_reset
FROM unnest(@names::text []) AS q (name)
LEFT JOIN pg_stat_user_tables AS s ON s.relid = to_regclass(q.name)
ORDER BY q.name;
