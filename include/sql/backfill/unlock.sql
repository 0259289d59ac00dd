SELECT pg_advisory_unlock(hashtext(@lock_name));
