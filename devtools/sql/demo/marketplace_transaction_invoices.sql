-- New database: the legacy invoice behind each marketplace transaction (demo application, see
-- demo_data.link_marketplace_invoices).
SELECT t.id, t.tenant_invoice_id
FROM marketplace.transactions AS t
WHERE t.tenant_invoice_id IS NOT NULL
ORDER BY t.id;
