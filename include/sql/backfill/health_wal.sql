-- Backfill throttle: this server's WAL insert position in bytes (the caller turns two readings into
-- a WAL rate); null on a standby.
SELECT CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::float8 END AS wal_bytes;
