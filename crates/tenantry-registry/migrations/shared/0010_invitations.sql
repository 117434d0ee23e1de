-- The first admin's invitation e-mail shares the outbox with webhooks: `channel` says which a delivery is, and an
-- e-mail names its tenant and recipient (the link itself waits in the secret store, never here).
ALTER TABLE notifications ADD COLUMN channel TEXT NOT NULL DEFAULT 'webhook';
ALTER TABLE notifications ADD COLUMN tenant_slug TEXT;
ALTER TABLE notifications ADD COLUMN recipient TEXT;
CREATE INDEX notifications_tenant ON notifications (tenant_slug, created_at);
