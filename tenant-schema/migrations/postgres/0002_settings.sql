-- Settings the control plane writes for the tenant's application to read (plan limits, modules, flags).
CREATE TABLE tenant_settings (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
