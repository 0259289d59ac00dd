-- Legacy database, demo application only: once phase 1 added the columns, the marketplace code
-- flags the invoice behind every marketplace transaction (what count parity `transactions` in the
-- config compares). Only rows that change are written; a few thousand rows in the demo.
-- @txn_ids / @invoice_ids: parallel arrays from marketplace_transaction_invoices.sql.
UPDATE public.invoices AS i
SET is_marketplace_invoice = true,
    marketplace_transaction_id = t.txn
FROM unnest(@txn_ids::bigint [], @invoice_ids::bigint []) AS t (txn, invoice)
WHERE i.id = t.invoice
  AND (i.is_marketplace_invoice IS DISTINCT FROM true OR i.marketplace_transaction_id IS DISTINCT FROM t.txn);
