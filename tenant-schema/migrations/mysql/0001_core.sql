-- Example tenant schema shipped with tenantry (MariaDB). MariaDB commits each DDL statement at once, so every
-- statement here may run again over its own partial work: a migration cut short is run again, not rolled back.
CREATE TABLE IF NOT EXISTS users (
    id                      BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    email                   VARCHAR(320) NOT NULL UNIQUE,
    password_hash           TEXT NOT NULL,
    invitation_token_hash   TEXT,
    role                    VARCHAR(64) NOT NULL DEFAULT 'member',
    must_reset_password     BOOLEAN NOT NULL DEFAULT TRUE,
    created_at              TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS organizations (
    id          BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS memberships (
    user_id          BIGINT NOT NULL,
    organization_id  BIGINT NOT NULL,
    PRIMARY KEY (user_id, organization_id),
    FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE,
    FOREIGN KEY (organization_id) REFERENCES organizations (id) ON DELETE CASCADE
);
