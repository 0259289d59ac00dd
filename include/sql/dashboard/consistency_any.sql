-- Dashboard: has there ever been a consistency run? (The table exists from migration_setup on, so
-- "no runs in the window" and "no runs yet" are told apart by this, not by the table's existence.)
SELECT EXISTS (SELECT 1 FROM "{schema}"."{table}") AS any_run;
