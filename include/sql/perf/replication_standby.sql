-- On a standby: how far behind the primary the last replayed transaction is.
SELECT EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::double precision AS replay_lag_seconds
