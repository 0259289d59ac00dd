-- Whether the backfill control tables exist (a plan reads them only if they do; a dry run creates nothing).
SELECT to_regclass(format('%I.backfill_runs', @schema::text)) IS NOT NULL;
