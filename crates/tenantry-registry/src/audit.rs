//! The append-only audit log: written inside the transaction of the change it records, read with filters, and
//! chained: each event stores the SHA-256 of its canonical content and of the event before it, so a changed,
//! deleted or inserted row shows when the chain is recomputed (`Registry::verify_audit_chain`).

use crate::records::{AuditEvent, NewAuditEvent};
use crate::store::{get, now_millis, Dialect};
use crate::{Error, Registry, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::AnyConnection;

/// Which audit events to list. Every field narrows the result; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub tenant_slug: Option<String>,
    pub event_type: Option<String>,
    pub actor: Option<String>,
    pub since_millis: Option<i64>,
    pub until_millis: Option<i64>,
    pub limit: i64,
}

/// The `prev_hash` of the first event in the chain.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Names the canonical form in the hashed text, so a later form can be told apart from this one.
const CANONICAL_FORM: &str = "tenantry-audit-v1";

/// The SHA-256 (hex) of an event's canonical content and its link to the event before it: a JSON array of the
/// form's name, the place in the chain, every stored column (`details` exactly as stored) and `prev_hash`. JSON
/// gives each field one unambiguous encoding, so no two different events share a canonical text.
#[allow(clippy::too_many_arguments, reason = "one argument per hashed column")]
fn event_hash(
    chain_seq: i64,
    at: i64,
    actor: &str,
    event_type: &str,
    tenant_slug: Option<&str>,
    job_id: Option<&str>,
    details: &str,
    prev_hash: &str,
) -> Result<String> {
    let canonical = serde_json::to_string(&(
        CANONICAL_FORM,
        chain_seq,
        at,
        actor,
        event_type,
        tenant_slug,
        job_id,
        details,
        prev_hash,
    ))
    .map_err(|error| Error::Corrupt(format!("audit event cannot be encoded: {error}")))?;
    Ok(hex::encode(Sha256::digest(canonical.as_bytes())))
}

/// Moves the chain head on by `n_events` and returns the place of the first new event and the hash it links to.
/// The head is one row, and this is an `UPDATE`, so on PostgreSQL it stays locked until the transaction ends and
/// concurrent appends queue here (SQLite writers are already serialised by `BEGIN IMMEDIATE`). Every writer takes
/// this lock last in its transaction (the audit row follows the change it records), so it waits on nobody while
/// holding it, and no lock cycle can form.
async fn advance_chain_head(
    connection: &mut AnyConnection,
    n_events: i64,
) -> Result<(i64, String)> {
    let head = sqlx::query(
        "UPDATE audit_chain_head SET chain_seq = chain_seq + $1 WHERE id = 1 RETURNING chain_seq, hash",
    )
    .bind(n_events)
    .fetch_optional(connection)
    .await?
    .ok_or_else(|| {
        Error::Corrupt(
            "the audit chain head (table audit_chain_head) is missing, so no audit event can be written; \
             `tenantry audit verify` reports what else was changed"
                .into(),
        )
    })?;
    let last_seq: i64 = get(&head, "chain_seq")?;
    Ok((last_seq - n_events + 1, get(&head, "hash")?))
}

async fn set_chain_head_hash(connection: &mut AnyConnection, hash: &str) -> Result<()> {
    sqlx::query("UPDATE audit_chain_head SET hash = $1 WHERE id = 1")
        .bind(hash)
        .execute(connection)
        .await?;
    Ok(())
}

pub(crate) async fn insert_audit(
    connection: &mut AnyConnection,
    event: &NewAuditEvent,
) -> Result<()> {
    insert_audits(connection, std::slice::from_ref(event)).await
}

/// Appends events to the chain in one statement, inside the caller's transaction (the change they record).
pub(crate) async fn insert_audits(
    connection: &mut AnyConnection,
    events: &[NewAuditEvent],
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let n_events = i64::try_from(events.len()).unwrap_or(i64::MAX);
    let (first_seq, mut prev_hash) = advance_chain_head(&mut *connection, n_events).await?;
    let at = now_millis();
    let mut links = Vec::with_capacity(events.len());
    for (chain_seq, event) in (first_seq..).zip(events) {
        let details = event.details.to_string();
        let hash = event_hash(
            chain_seq,
            at,
            &event.actor,
            event.event_type,
            event.tenant_slug.as_deref(),
            event.job_id.as_deref(),
            &details,
            &prev_hash,
        )?;
        links.push((
            chain_seq,
            details,
            std::mem::replace(&mut prev_hash, hash.clone()),
            hash,
        ));
    }
    let rows: Vec<String> = (0..events.len())
        .map(|index| {
            let first = index * 8 + 2;
            let parameters: Vec<String> = (first..first + 8).map(|n| format!("${n}")).collect();
            format!("($1, {})", parameters.join(", "))
        })
        .collect();
    let statement = format!(
        "INSERT INTO audit_events (at, actor, event_type, tenant_slug, job_id, details, chain_seq, prev_hash, hash) VALUES {}",
        rows.join(", ")
    );
    let mut insert = sqlx::query(&statement).bind(at);
    for (event, (chain_seq, details, link, hash)) in events.iter().zip(&links) {
        insert = insert
            .bind(&event.actor)
            .bind(event.event_type)
            .bind(&event.tenant_slug)
            .bind(&event.job_id)
            .bind(details)
            .bind(*chain_seq)
            .bind(link)
            .bind(hash);
    }
    insert.execute(&mut *connection).await?;
    // Whoever is to be told of these events (webhooks), in the same transaction as the change.
    crate::outbox::enqueue_for_audits(&mut *connection, events, at).await?;
    set_chain_head_hash(connection, &prev_hash).await
}

impl Registry {
    /// Writes an audit event that records no other change (for example a secret being read).
    pub async fn record_audit(&self, event: &NewAuditEvent) -> Result<()> {
        let mut transaction = self.begin_write().await?;
        insert_audit(&mut transaction, event).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Audit events, newest first.
    pub async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        let rows = sqlx::query(
            "SELECT id, at, actor, event_type, tenant_slug, job_id, details FROM audit_events
             WHERE (CAST($1 AS TEXT) IS NULL OR tenant_slug = $1)
               AND (CAST($2 AS TEXT) IS NULL OR event_type = $2)
               AND (CAST($3 AS TEXT) IS NULL OR actor = $3)
               AND (CAST($4 AS BIGINT) IS NULL OR at >= $4)
               AND (CAST($5 AS BIGINT) IS NULL OR at <= $5)
             ORDER BY id DESC LIMIT $6",
        )
        .bind(&filter.tenant_slug)
        .bind(&filter.event_type)
        .bind(&filter.actor)
        .bind(filter.since_millis)
        .bind(filter.until_millis)
        .bind(if filter.limit > 0 { filter.limit } else { 100 })
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(AuditEvent::from_row).collect()
    }
}

/// What `verify_audit_chain` found wrong with one place in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditChainFault {
    /// The event's stored content no longer hashes to its stored hash: it was edited after it was written.
    Altered,
    /// Places in the chain with no event: events were deleted.
    Missing,
    /// The event links to a hash that is not the one of the event before it: that event was edited and re-hashed,
    /// or this link was edited.
    Relinked,
    /// A row with no place in the chain: inserted outside tenantry, or its chain columns were cleared.
    Unchained,
    /// The chain head (`audit_chain_head`) disagrees with the newest event, or is gone.
    Head,
}

/// One broken or missing link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditChainFinding {
    pub fault: AuditChainFault,
    /// The row concerned (`None` for places whose events are gone).
    pub event_id: Option<i64>,
    /// The place in the chain concerned (the first of them, for `missing`).
    pub chain_seq: Option<i64>,
    pub detail: String,
}

/// The outcome of recomputing the audit chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditChainReport {
    pub intact: bool,
    /// Events found in the chain.
    pub n_events: i64,
    /// The place and hash of the newest event, as the chain head records them. Kept somewhere else, they prove
    /// later that the chain up to here was not rewritten as a whole.
    pub head_chain_seq: i64,
    pub head_hash: String,
    /// Every broken or missing link, in chain order (rows outside the chain last).
    pub findings: Vec<AuditChainFinding>,
}

/// One chained row as read back for verification, with `details` exactly as stored.
struct StoredLink {
    id: i64,
    chain_seq: i64,
    at: i64,
    actor: String,
    event_type: String,
    tenant_slug: Option<String>,
    job_id: Option<String>,
    details: String,
    prev_hash: Option<String>,
    hash: Option<String>,
}

impl StoredLink {
    fn from_row(row: &AnyRow) -> Result<StoredLink> {
        Ok(StoredLink {
            id: get(row, "id")?,
            chain_seq: get(row, "chain_seq")?,
            at: get(row, "at")?,
            actor: get(row, "actor")?,
            event_type: get(row, "event_type")?,
            tenant_slug: get(row, "tenant_slug")?,
            job_id: get(row, "job_id")?,
            details: get(row, "details")?,
            prev_hash: get(row, "prev_hash")?,
            hash: get(row, "hash")?,
        })
    }

    /// The hash its content and stored link give now.
    fn recomputed_hash(&self) -> Result<String> {
        event_hash(
            self.chain_seq,
            self.at,
            &self.actor,
            &self.event_type,
            self.tenant_slug.as_deref(),
            self.job_id.as_deref(),
            &self.details,
            self.prev_hash.as_deref().unwrap_or_default(),
        )
    }
}

/// How many chained rows `verify_audit_chain` reads per query.
const VERIFY_PAGE: i64 = 1000;

/// Walks the chain in order of place and records every fault.
struct ChainWalk {
    findings: Vec<AuditChainFinding>,
    expected_seq: i64,
    expected_prev_hash: String,
    previous_id: Option<i64>,
    n_events: i64,
}

impl ChainWalk {
    fn new() -> ChainWalk {
        ChainWalk {
            findings: Vec::new(),
            expected_seq: 1,
            expected_prev_hash: GENESIS_HASH.to_owned(),
            previous_id: None,
            n_events: 0,
        }
    }

    fn after_previous(&self) -> String {
        match self.previous_id {
            Some(id) => format!("after event id {id} (#{})", self.expected_seq - 1),
            None => "at the start of the chain".to_owned(),
        }
    }

    fn visit(&mut self, link: &StoredLink) -> Result<()> {
        self.n_events += 1;
        if link.chain_seq > self.expected_seq {
            self.findings.push(AuditChainFinding {
                fault: AuditChainFault::Missing,
                event_id: None,
                chain_seq: Some(self.expected_seq),
                detail: format!(
                    "{} missing (deleted) {}, before event id {} (#{})",
                    places(self.expected_seq, link.chain_seq - 1),
                    self.after_previous(),
                    link.id,
                    link.chain_seq
                ),
            });
        } else if link.prev_hash.as_deref() != Some(self.expected_prev_hash.as_str()) {
            // After a gap the link cannot be judged: the event it pointed to is gone.
            self.findings.push(AuditChainFinding {
                fault: AuditChainFault::Relinked,
                event_id: Some(link.id),
                chain_seq: Some(link.chain_seq),
                detail: format!(
                    "event id {} (#{}) links to a hash that is not the one of the event before it ({}): that \
                     event was changed and re-hashed, or this link was edited",
                    link.id,
                    link.chain_seq,
                    self.after_previous()
                ),
            });
        }
        let recomputed = link.recomputed_hash()?;
        if link.hash.as_deref() != Some(recomputed.as_str()) {
            self.findings.push(AuditChainFinding {
                fault: AuditChainFault::Altered,
                event_id: Some(link.id),
                chain_seq: Some(link.chain_seq),
                detail: format!(
                    "event id {} (#{}, {} by {}) does not match its hash: it was changed after it was written",
                    link.id, link.chain_seq, link.event_type, link.actor
                ),
            });
        }
        self.expected_seq = link.chain_seq + 1;
        self.expected_prev_hash = link.hash.clone().unwrap_or_default();
        self.previous_id = Some(link.id);
        Ok(())
    }

    fn end(&mut self, head: Option<(i64, String)>) {
        let last_seq = self.expected_seq - 1;
        match head {
            None => self.findings.push(AuditChainFinding {
                fault: AuditChainFault::Head,
                event_id: None,
                chain_seq: None,
                detail: "the chain head (table audit_chain_head) is missing".to_owned(),
            }),
            Some((head_seq, _)) if head_seq > last_seq => self.findings.push(AuditChainFinding {
                fault: AuditChainFault::Missing,
                event_id: None,
                chain_seq: Some(last_seq + 1),
                detail: format!(
                    "{} missing (deleted) {}, at the end of the chain (the head records #{head_seq})",
                    places(last_seq + 1, head_seq),
                    self.after_previous()
                ),
            }),
            Some((head_seq, _)) if head_seq < last_seq => self.findings.push(AuditChainFinding {
                fault: AuditChainFault::Head,
                event_id: self.previous_id,
                chain_seq: Some(last_seq),
                detail: format!(
                    "the chain head records #{head_seq}, but events go on to #{last_seq}: the head was edited, \
                     or events were added outside tenantry"
                ),
            }),
            Some((_, head_hash)) if head_hash != self.expected_prev_hash => {
                self.findings.push(AuditChainFinding {
                    fault: AuditChainFault::Head,
                    event_id: self.previous_id,
                    chain_seq: Some(last_seq),
                    detail: format!(
                        "the chain head's hash is not the newest event's (#{last_seq}): that event was changed \
                         and re-hashed, or the head was edited"
                    ),
                })
            }
            Some(_) => {}
        }
    }
}

/// "event #7 is" or "events #7 to #9 are".
fn places(first: i64, last: i64) -> String {
    if first == last {
        format!("event #{first} is")
    } else {
        format!("events #{first} to #{last} are")
    }
}

impl Registry {
    /// Gives the events written before the chain existed (by a version without it) their places, in id order,
    /// once: the migration that added the chain noted the newest of them in `legacy_up_to_id`. Runs at open; from
    /// then on the chain vouches for them as for any other event.
    pub(crate) async fn chain_legacy_audit_events(&self) -> Result<()> {
        let pending: Option<i64> =
            sqlx::query_scalar("SELECT legacy_up_to_id FROM audit_chain_head WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        if pending.unwrap_or(0) == 0 {
            return Ok(());
        }
        let mut transaction = self.begin_write().await?;
        // A no-op update to lock the head (PostgreSQL) and read it as this transaction will change it.
        let head = sqlx::query(
            "UPDATE audit_chain_head SET legacy_up_to_id = legacy_up_to_id WHERE id = 1
             RETURNING chain_seq, hash, legacy_up_to_id",
        )
        .fetch_optional(&mut *transaction)
        .await?;
        let Some(head) = head else {
            return Ok(());
        };
        let legacy_up_to_id: i64 = get(&head, "legacy_up_to_id")?;
        if legacy_up_to_id == 0 {
            return Ok(());
        }
        let mut chain_seq: i64 = get(&head, "chain_seq")?;
        let mut prev_hash: String = get(&head, "hash")?;
        let rows = sqlx::query(
            "SELECT id, at, actor, event_type, tenant_slug, job_id, details FROM audit_events
             WHERE chain_seq IS NULL AND id <= $1 ORDER BY id",
        )
        .bind(legacy_up_to_id)
        .fetch_all(&mut *transaction)
        .await?;
        for row in &rows {
            chain_seq += 1;
            let id: i64 = get(row, "id")?;
            let tenant_slug: Option<String> = get(row, "tenant_slug")?;
            let job_id: Option<String> = get(row, "job_id")?;
            let hash = event_hash(
                chain_seq,
                get(row, "at")?,
                &get::<String>(row, "actor")?,
                &get::<String>(row, "event_type")?,
                tenant_slug.as_deref(),
                job_id.as_deref(),
                &get::<String>(row, "details")?,
                &prev_hash,
            )?;
            sqlx::query(
                "UPDATE audit_events SET chain_seq = $1, prev_hash = $2, hash = $3 WHERE id = $4",
            )
            .bind(chain_seq)
            .bind(&prev_hash)
            .bind(&hash)
            .bind(id)
            .execute(&mut *transaction)
            .await?;
            prev_hash = hash;
        }
        sqlx::query(
            "UPDATE audit_chain_head SET chain_seq = $1, hash = $2, legacy_up_to_id = 0 WHERE id = 1",
        )
        .bind(chain_seq)
        .bind(&prev_hash)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        tracing::info!(
            n_events = rows.len(),
            "audit events written before the audit chain existed are now chained"
        );
        Ok(())
    }

    /// Recomputes the audit chain from one consistent snapshot and names every broken or missing link.
    pub async fn verify_audit_chain(&self) -> Result<AuditChainReport> {
        // One snapshot for the head and every page, so events appended meanwhile neither show as extra nor
        // make the head look ahead of the rows.
        let mut transaction = match self.dialect {
            Dialect::Postgres => {
                self.pool
                    .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    .await?
            }
            Dialect::Sqlite => self.pool.begin_with("BEGIN").await?,
        };
        let head_row = sqlx::query("SELECT chain_seq, hash FROM audit_chain_head WHERE id = 1")
            .fetch_optional(&mut *transaction)
            .await?;
        let head: Option<(i64, String)> = match &head_row {
            Some(row) => Some((get(row, "chain_seq")?, get(row, "hash")?)),
            None => None,
        };
        let mut walk = ChainWalk::new();
        let mut after_seq = 0_i64;
        loop {
            let rows = sqlx::query(
                "SELECT id, at, actor, event_type, tenant_slug, job_id, details, chain_seq, prev_hash, hash
                 FROM audit_events WHERE chain_seq > $1 ORDER BY chain_seq LIMIT $2",
            )
            .bind(after_seq)
            .bind(VERIFY_PAGE)
            .fetch_all(&mut *transaction)
            .await?;
            for row in &rows {
                let link = StoredLink::from_row(row)?;
                walk.visit(&link)?;
                after_seq = link.chain_seq;
            }
            if i64::try_from(rows.len()).unwrap_or(i64::MAX) < VERIFY_PAGE {
                break;
            }
        }
        walk.end(head.clone());
        // A place of 0 or below is no place: such rows are outside the chain too.
        let unchained: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM audit_events WHERE chain_seq IS NULL OR chain_seq < 1 ORDER BY id",
        )
        .fetch_all(&mut *transaction)
        .await?;
        for id in unchained {
            walk.findings.push(AuditChainFinding {
                fault: AuditChainFault::Unchained,
                event_id: Some(id),
                chain_seq: None,
                detail: format!(
                    "event id {id} has no place in the chain: it was inserted outside tenantry, or its chain \
                     columns were cleared"
                ),
            });
        }
        transaction.rollback().await?;
        let (head_chain_seq, head_hash) = head.unwrap_or_default();
        Ok(AuditChainReport {
            intact: walk.findings.is_empty(),
            n_events: walk.n_events,
            head_chain_seq,
            head_hash,
            findings: walk.findings,
        })
    }
}
