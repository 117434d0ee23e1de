-- A tenant is a set of resources, each of one kind on a server of that kind, each with its own secret. The
-- `database` resource repeats the tenant row's server, database and secret (which the API keeps showing); the
-- other kinds live here alone.
CREATE TABLE tenant_resources (
    tenant_slug TEXT NOT NULL,
    kind TEXT NOT NULL,
    server_name TEXT NOT NULL,
    name TEXT NOT NULL,
    secret_name TEXT,
    status TEXT NOT NULL,
    labels TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_slug, kind)
);
CREATE INDEX tenant_resources_by_server ON tenant_resources (server_name);

-- Where an unfinished job placed a tenant's other resources: the room it holds on those servers until it ends.
CREATE TABLE job_resource_placements (
    job_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    server_name TEXT NOT NULL,
    PRIMARY KEY (job_id, kind)
);
CREATE INDEX job_resource_placements_by_server ON job_resource_placements (server_name);

-- Where tenants connect when it is not the admin URL's host (RabbitMQ: the AMQP URL beside the management API).
ALTER TABLE servers ADD COLUMN public_url TEXT;

INSERT INTO tenant_resources (tenant_slug, kind, server_name, name, secret_name, status, labels, created_at, updated_at)
SELECT slug, 'database', server_name, resource_name, secret_ref,
       CASE WHEN status IN ('suspended', 'offboarded') THEN 'disabled' ELSE 'active' END,
       labels, created_at, updated_at
FROM tenants;
