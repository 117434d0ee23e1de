-- The registry schema on SQLite. Times are Unix milliseconds (BIGINT) so that both backends store the same values.
CREATE TABLE servers (
    name              TEXT PRIMARY KEY,
    engine            TEXT NOT NULL,
    region            TEXT NOT NULL,
    admin_secret_ref  TEXT NOT NULL,
    capacity_hint     BIGINT NOT NULL CHECK (capacity_hint >= 0),
    status            TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);

CREATE TABLE tenants (
    slug           TEXT PRIMARY KEY,
    display_name   TEXT NOT NULL,
    admin_email    TEXT NOT NULL,
    plan           TEXT NOT NULL,
    region         TEXT NOT NULL,
    server_name    TEXT NOT NULL REFERENCES servers (name),
    resource_name  TEXT NOT NULL,
    secret_ref     TEXT NOT NULL,
    status         TEXT NOT NULL,
    labels         TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX tenants_by_server ON tenants (server_name);

CREATE TABLE jobs (
    id                TEXT PRIMARY KEY,
    kind              TEXT NOT NULL,
    tenant_slug       TEXT NOT NULL,
    status            TEXT NOT NULL,
    params            TEXT NOT NULL,
    state             TEXT NOT NULL,
    placed_server     TEXT,
    error_code        TEXT,
    error_message     TEXT,
    actor             TEXT NOT NULL,
    lease_owner       TEXT,
    lease_token       BIGINT NOT NULL DEFAULT 0,
    lease_expires_at  BIGINT,
    created_at        BIGINT NOT NULL,
    started_at        BIGINT,
    finished_at       BIGINT,
    updated_at        BIGINT NOT NULL
);
-- At most one unfinished job per tenant slug: concurrent requests for one slug cannot both run.
CREATE UNIQUE INDEX jobs_one_live_per_slug ON jobs (tenant_slug)
    WHERE status IN ('pending', 'awaiting_approval', 'in_progress');
CREATE INDEX jobs_by_placed_server ON jobs (placed_server) WHERE placed_server IS NOT NULL;
CREATE INDEX jobs_by_created ON jobs (created_at);

CREATE TABLE job_phases (
    job_id       TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    position     BIGINT NOT NULL,
    name         TEXT NOT NULL,
    status       TEXT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    started_at   BIGINT,
    finished_at  BIGINT,
    PRIMARY KEY (job_id, position)
);

CREATE TABLE job_events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id   TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    at       BIGINT NOT NULL,
    kind     TEXT NOT NULL,
    phase    TEXT,
    status   TEXT,
    level    TEXT NOT NULL,
    message  TEXT NOT NULL
);
CREATE INDEX job_events_by_job ON job_events (job_id, id);

CREATE TABLE audit_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           BIGINT NOT NULL,
    actor        TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    tenant_slug  TEXT,
    job_id       TEXT,
    details      TEXT NOT NULL
);
CREATE INDEX audit_by_tenant ON audit_events (tenant_slug, id);

CREATE TABLE secrets (
    name         TEXT PRIMARY KEY,
    key_id       TEXT NOT NULL,
    wrapped_key  TEXT NOT NULL,
    ciphertext   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
