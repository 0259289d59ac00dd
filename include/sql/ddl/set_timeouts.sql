-- Session timeouts for every DDL/backfill statement the DDL executor sends next (values from
-- config ddl.lock_timeout / ddl.statement_timeout, bound as values, never concatenated).
-- lock_timeout keeps a blocked ALTER from queueing in front of the application's queries.
SELECT set_config('lock_timeout', @lock_timeout, false) AS lock_timeout,
       set_config('statement_timeout', @statement_timeout, false) AS statement_timeout;
