-- Derived-table fragment (not run on its own; composed by migration_engine.consistency.plan as
-- the "{source}" of new_buckets.sql / new_rows.sql, one level per looked-up column): the new rows
-- plus, for a looked-up column (provider_id, resolved from the old tenant_id through
-- marketplace.providers), the old value it stands for, joined inside the new database. A hash join,
-- not a per-row subquery; one-to-one because the preflight checks both lookup columns are unique.
(
    SELECT s.*, lk."{match}" AS "{as_column}"
    FROM "{source}" AS s
    LEFT JOIN "{lookup_table}" AS lk ON s."{column}" = lk."{value}"
);
