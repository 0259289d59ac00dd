SELECT 'tenants', count(*) FROM public.tenants
UNION ALL SELECT 'contacts', count(*) FROM public.contacts
UNION ALL SELECT 'invoices', count(*) FROM public.invoices
UNION ALL SELECT 'max_invoice_id', coalesce(max(id), 0) FROM public.invoices
UNION ALL SELECT 'listings', count(*) FROM public.marketplace_listings
UNION ALL SELECT 'active_listings', count(*) FROM public.marketplace_listings WHERE status = 'ACTIVE'
UNION ALL SELECT 'images', count(*) FROM public.marketplace_listing_images;
