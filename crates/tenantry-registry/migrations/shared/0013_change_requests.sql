-- Tenant admins: a platform user may be scoped to one tenant (`tenant_slug`, set for role TENANT_ADMIN alone).
ALTER TABLE platform_users ADD COLUMN tenant_slug TEXT;

-- A tenant admin's request to change their tenant: a plan, module switches (`modules`, a JSON object of module
-- name to on/off), or both, with the requester's reason. A PLATFORM_ADMIN other than the requester approves it
-- (the set-plan job `job_id`, made in the same transaction) or rejects it (`decision_reason`).
CREATE TABLE change_requests (
    id TEXT PRIMARY KEY,
    tenant_slug TEXT NOT NULL,
    status TEXT NOT NULL,
    plan TEXT,
    modules TEXT NOT NULL,
    reason TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    decided_by TEXT,
    decision_reason TEXT,
    job_id TEXT,
    created_at BIGINT NOT NULL,
    decided_at BIGINT
);
CREATE INDEX change_requests_by_tenant ON change_requests (tenant_slug, created_at);
CREATE INDEX change_requests_by_status ON change_requests (status, created_at);
