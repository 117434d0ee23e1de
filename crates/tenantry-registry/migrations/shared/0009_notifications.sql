-- Webhook subscriptions: where to deliver which events, and in which body format. The signing secret lives in
-- the secret store (`webhook-<id>`), never here.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    events TEXT NOT NULL,
    format TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- The outbox: one row per delivery, written in the transaction of the change it reports (with the audit event).
-- Its id is the delivery's idempotency id (`webhook-id`), the same on every attempt.
CREATE TABLE notifications (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    lease_owner TEXT,
    lease_expires_at BIGINT,
    created_at BIGINT NOT NULL,
    sent_at BIGINT
);
CREATE INDEX notifications_due ON notifications (status, next_attempt_at);
