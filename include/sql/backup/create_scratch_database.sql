-- The restore check's scratch database (dropped again right after the check). template0: nothing
-- from template1 can collide with what the dump restores.
-- Must run alone (not in a transaction block), so the session's lock_timeout/statement_timeout are
-- set before it from ddl/set_timeouts.sql; the only lock involved is on the scratch/template DB.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
CREATE DATABASE "{database}" TEMPLATE template0;
