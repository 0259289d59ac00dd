-- Progress of a CREATE INDEX [CONCURRENTLY] running in another session (polled while it builds).
SELECT phase, blocks_done, blocks_total, tuples_done, tuples_total, lockers_done, lockers_total,
       partitions_done, partitions_total
FROM pg_stat_progress_create_index
WHERE pid = @pid;
