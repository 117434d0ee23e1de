-- This registry's own id, made once: every object tenantry creates outside the registry carries it, so two
-- installations sharing a server never take each other's objects for their own.
CREATE TABLE installation (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
