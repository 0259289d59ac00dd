-- Migration 006: backfill passes on keys of any supported type (uuid, text, ... not only integers).
-- Key bounds and checkpoints become text (the server's text form of the key; the engine casts them
-- back with the key column's type, so every comparison happens on the server in the key's own type
-- and collation), and each pass records its key's base type. Existing bigint values keep their
-- value (bigint -> text is exact); passes planned before this migration had integer keys, hence
-- the 'int8' default. The first range of a non-integer key has no lower bound (key_lo and its
-- high-water mark NULL = "before the first key").
-- The two CHECKs comparing bounds are dropped: on text they would compare digits as strings ('9' >
-- '10'). The engine keeps the invariant instead: a checkpoint only moves from the value it read
-- (compare-and-set), and a range is done only when its last page reached key_hi.
-- Runs in one transaction through the DDL executor (lock/statement timeouts set first).
-- Never edit once shipped: add a new numbered file instead.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
-- Type changes rewrite backfill_runs / backfill_ranges under their table lock: they hold one row
-- per pass and per range (tens of rows) and only the engine uses them, so that takes milliseconds.
-- The dropped CHECKs / NOT NULLs are replaced as described above; the file runs in one transaction
-- with its schema_version row (all or nothing), so it is re-run whole if it fails part way.
-- squawk-ignore-file changing-column-type, ban-drop-constraint, ban-drop-not-null, prefer-robust-stmts

ALTER TABLE "{schema}".backfill_ranges DROP CONSTRAINT IF EXISTS backfill_ranges_check;
ALTER TABLE "{schema}".backfill_ranges DROP CONSTRAINT IF EXISTS backfill_ranges_check1;

ALTER TABLE "{schema}".backfill_ranges
    ALTER COLUMN key_lo TYPE text USING key_lo::text,
    ALTER COLUMN key_hi TYPE text USING key_hi::text,
    ALTER COLUMN last_key TYPE text USING last_key::text,
    ALTER COLUMN key_lo DROP NOT NULL,
    ALTER COLUMN last_key DROP NOT NULL;

ALTER TABLE "{schema}".backfill_runs
    ALTER COLUMN key_min TYPE text USING key_min::text,
    ALTER COLUMN key_max TYPE text USING key_max::text,
    ADD COLUMN IF NOT EXISTS key_type text NOT NULL DEFAULT 'int8';
