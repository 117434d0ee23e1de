-- Example tenant schema shipped with tenantry (SQLite). Replace with your own via TENANTRY_TENANT_MIGRATIONS.
CREATE TABLE users (
    id                      INTEGER PRIMARY KEY AUTOINCREMENT,
    email                   TEXT NOT NULL UNIQUE,
    password_hash           TEXT NOT NULL,
    invitation_token_hash   TEXT,
    role                    TEXT NOT NULL DEFAULT 'member',
    must_reset_password     INTEGER NOT NULL DEFAULT 1,
    created_at              TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE organizations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE memberships (
    user_id          INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    organization_id  INTEGER NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    PRIMARY KEY (user_id, organization_id)
);
