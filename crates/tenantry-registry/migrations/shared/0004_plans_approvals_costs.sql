-- Plans, approvals and cost attribution: a tenant's effective settings (plan limits, modules, flags, monthly
-- cost), when a request waiting for approval lapses, and the cost labels of each secret.
ALTER TABLE tenants ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
ALTER TABLE jobs ADD COLUMN approval_expires_at BIGINT;
ALTER TABLE secrets ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
