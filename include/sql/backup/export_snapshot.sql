-- Run first in a REPEATABLE READ transaction that stays open while pg_dump runs: pg_dump
-- --snapshot=<id> then dumps exactly what this transaction sees, so the row counts taken here and
-- the WAL position match the dump even while the application keeps writing.
SELECT pg_export_snapshot() AS snapshot,
       (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text AS wal_lsn,
       clock_timestamp() AS taken_at;
