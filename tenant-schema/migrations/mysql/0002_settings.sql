-- Settings the control plane writes for the tenant's application to read (plan limits, modules, flags).
CREATE TABLE IF NOT EXISTS tenant_settings (
    `key`       VARCHAR(255) NOT NULL PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS audit_log (
    id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    at          TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
