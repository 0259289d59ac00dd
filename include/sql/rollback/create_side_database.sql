-- Rollback scenario 3: the side database the pre-cutover backup is restored into. template0:
-- nothing from template1 can collide with what the dump restores. Must run alone (not in a
-- transaction block); the only lock involved is on the template database.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
CREATE DATABASE "{database}" TEMPLATE template0;
