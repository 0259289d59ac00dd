-- Preflight: how Postgres casts one type to another: i (implicit: information-preserving by
-- design), a (on assignment: may fail or round), e (explicit only); no row: no cast at all.
SELECT c.castcontext::text
FROM pg_cast AS c
WHERE c.castsource = @source_oid AND c.casttarget = @target_oid;
