-- Legacy database: have phase 1 (step 1.1) added both invoice columns the demo application fills?
SELECT count(*) = 2
FROM information_schema.columns
WHERE table_schema = 'public'
  AND table_name = 'invoices'
  AND column_name IN ('is_marketplace_invoice', 'marketplace_transaction_id');
