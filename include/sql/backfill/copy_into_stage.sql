-- Backfill, new side: the COPY text streamed out of the legacy database, into this session's stage.
COPY "{stage}" FROM STDIN;
