-- Deterministic legacy data, sized by the session settings library.patrons, library.loans and library.fines (seed.py). No random():
-- every value is arithmetic on the row number, so two runs give byte-identical tables.
INSERT INTO public.patrons (patron_no, full_name, email, card_barcode, joined_on)
SELECT g, 'Patron ' || g,
       CASE WHEN g % 7 = 0 THEN NULL ELSE 'patron' || g || '@example.org' END,
       'LIB-' || lpad(g::text, 8, '0'),
       date '2015-01-01' + (g * 3) % 3000
FROM generate_series(1, current_setting('library.patrons')::int) AS g;

INSERT INTO public.book_loans (loan_no, patron_no, isbn, branch_code, loan_state, checked_out_at, due_back,
                               renewals, last_modified)
SELECT g, 1 + (g * 37) % current_setting('library.patrons')::int,
       '978-' || lpad(((g * 7919) % 1000000000)::text, 10, '0'),
       (ARRAY['MAIN', 'EAST', 'WEST'])[1 + g % 3],
       (ARRAY['OUT', 'RENEWED', 'OVERDUE', 'RETURNED', 'OUT'])[1 + g % 5],
       timestamptz '2026-01-01 09:00:00+00' + make_interval(mins => g * 17),
       date '2026-01-22' + g % 60,
       (g % 4)::smallint,
       timestamptz '2026-03-01 12:00:00+00' + make_interval(secs => g)
FROM generate_series(1, current_setting('library.loans')::int) AS g;

INSERT INTO public.patron_fines (fine_id, loan_no, amount, reason, assessed_at, last_modified)
SELECT md5('library-fine-' || g)::uuid, 1 + (g * 11) % current_setting('library.loans')::int,
       round(((g * 137) % 4000) / 100.0 + 0.05, 2),
       (ARRAY['late return', 'damaged cover', 'lost item'])[1 + g % 3],
       timestamptz '2026-02-01 10:00:00+00' + make_interval(mins => g * 5),
       timestamptz '2026-03-01 12:00:00+00' + make_interval(secs => g)
FROM generate_series(1, current_setting('library.fines')::int) AS g;

-- identity columns continue after the seeded keys (the application inserts without a key)
SELECT setval(pg_get_serial_sequence('public.patrons', 'patron_no'), current_setting('library.patrons')::int);
SELECT setval(pg_get_serial_sequence('public.book_loans', 'loan_no'), current_setting('library.loans')::int);
