-- A backup: one logical dump per resource that holds data, encrypted in the backup store. `resources` is a JSON
-- array of {kind, engine, file, plain_bytes, stored_bytes, plain_sha256, stored_sha256}; the data key lives in the
-- secret store as `backup-<id>`, so deleting it makes the files unreadable. `job_id` is the job that took it (a
-- backup job, or the offboard job whose purge took it first). `source` is what a restore needs of the tenant
-- it came from, which a purge removes: {display_name, admin_email, plan, region, server, engine}.
CREATE TABLE backups (
    id TEXT PRIMARY KEY,
    tenant_slug TEXT NOT NULL,
    status TEXT NOT NULL,
    source TEXT NOT NULL,
    resources TEXT NOT NULL,
    job_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    completed_at BIGINT,
    expires_at BIGINT
);
CREATE INDEX backups_by_tenant ON backups (tenant_slug, created_at);
CREATE INDEX backups_by_job ON backups (job_id);
