-- Fleet migrations. A rollout is a job (kind `rollout`); this row holds what its workers share while it runs:
-- the schema it brings every tenant to, the bounds, and the operator's control (run, paused, aborted).
CREATE TABLE rollouts (
    id TEXT PRIMARY KEY,
    schema_hash TEXT NOT NULL,
    target_version BIGINT NOT NULL,
    control TEXT NOT NULL,
    -- Children of waves up to this one may be claimed (-1: none yet; 0 is the canary).
    open_wave BIGINT NOT NULL,
    n_waves BIGINT NOT NULL,
    concurrency BIGINT NOT NULL,
    per_server BIGINT NOT NULL,
    max_failures BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- One row per tenant a rollout migrates, claimed with a lease and fenced by its token as jobs are.
CREATE TABLE rollout_tenants (
    rollout_id TEXT NOT NULL,
    tenant_slug TEXT NOT NULL,
    server_name TEXT NOT NULL,
    wave BIGINT NOT NULL,
    status TEXT NOT NULL,
    -- JSON arrays: the versions the tenant lacked when the rollout listed it, and those it got.
    pending_versions TEXT NOT NULL,
    versions_applied TEXT NOT NULL,
    error TEXT,
    attempts BIGINT NOT NULL,
    lease_owner TEXT,
    lease_token BIGINT NOT NULL,
    lease_expires_at BIGINT,
    started_at BIGINT,
    finished_at BIGINT,
    PRIMARY KEY (rollout_id, tenant_slug)
);
CREATE INDEX rollout_tenants_by_status ON rollout_tenants (rollout_id, status, wave);
