-- Benchmark fixture only: @sample_size copied listing keys spread evenly over the key range
-- (the smallest key of each of @sample_size equal slices).
SELECT min(k.legacy_listing_id)
FROM (
    SELECT n.legacy_listing_id, ntile(@sample_size) OVER (ORDER BY n.legacy_listing_id) AS slice
    FROM marketplace.service_listings AS n
    WHERE n.legacy_listing_id IS NOT NULL
) AS k
GROUP BY k.slice
ORDER BY 1;
