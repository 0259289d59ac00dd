-- Rollback scenario 3: after rows were written with explicit keys, move the key's sequence past
-- the largest key so the application's next insert into the old table cannot collide.
SELECT setval(
    @sequence_name::regclass,
    greatest(
        coalesce((SELECT max(t."{key}") FROM "{table}" AS t), 1),
        coalesce(pg_sequence_last_value(@sequence_name::regclass), 1)
    )
);
