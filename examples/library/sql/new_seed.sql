-- The new service already knows every patron as a member (different ids: the lookup matters),
-- plus a few members who never had a patron record (legacy_patron_no NULL).
INSERT INTO circulation.members (legacy_patron_no, display_name)
SELECT g, 'Patron ' || g FROM generate_series(current_setting('library.patrons')::int, 1, -1) AS g;

INSERT INTO circulation.members (legacy_patron_no, display_name)
SELECT NULL, 'New member ' || g FROM generate_series(1, 5) AS g;
