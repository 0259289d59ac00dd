SELECT EXISTS (
    SELECT 1 FROM information_schema.tables
    WHERE table_schema = @schema AND table_name = 'feature_flags'
);
