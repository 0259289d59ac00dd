-- Demo/test/benchmark fixture only: receive the rows of export_active_listings.sql.
COPY zdm_copy_listings FROM STDIN;
