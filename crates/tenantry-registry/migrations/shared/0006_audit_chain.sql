-- Tamper-evident audit log. Every event takes the next place in one chain per registry (chain_seq, from 1), and
-- stores the hash of the event before it (prev_hash; 64 zeros before the first) and the SHA-256 of its own canonical
-- content with that link (hash). tenantry-registry computes both (src/audit.rs); `tenantry audit verify` recomputes
-- them. audit_chain_head holds the newest place and hash: every append updates that one row first, which on
-- PostgreSQL locks it until the transaction ends, so concurrent writers append one after another.
ALTER TABLE audit_events ADD COLUMN chain_seq BIGINT;
ALTER TABLE audit_events ADD COLUMN prev_hash TEXT;
ALTER TABLE audit_events ADD COLUMN hash TEXT;
CREATE UNIQUE INDEX audit_by_chain_seq ON audit_events (chain_seq);
-- legacy_up_to_id: the newest event written before this migration. Those events have no place yet; the first
-- start of this version chains them in id order (SQL has no portable SHA-256) and sets it to 0. No later row
-- is ever chained that way, so a row inserted by hand stays outside the chain, where verify names it.
CREATE TABLE audit_chain_head (
    id               INTEGER PRIMARY KEY,
    chain_seq        BIGINT NOT NULL,
    hash             TEXT NOT NULL,
    legacy_up_to_id  BIGINT NOT NULL
);
INSERT INTO audit_chain_head (id, chain_seq, hash, legacy_up_to_id)
SELECT 1, 0, '0000000000000000000000000000000000000000000000000000000000000000', COALESCE(MAX(id), 0)
FROM audit_events;
