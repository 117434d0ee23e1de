//! Tenant pages: the list (search, status filter, paging) and one tenant's detail (placement, plan and its
//! effective settings, status, schema version and pending migrations, jobs, audit, and Suspend or Resume and
//! Offboard for admins), plus the browser side of offboarding, suspending and resuming.

use super::audit::{actor_names, audit_table};
use super::errors::{OrPage, PageError};
use super::jobs::jobs_table;
use super::layout::{
    empty_state, html_response, limit_millis, money, page_header, pill, query_escape, see_other,
    select_field, shell, switch_chip, time_ago, Field, Section, Viewer,
};
use crate::api::rollouts::{read_tenant_schema, TenantSchemaView};
use crate::api::ApiForm;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::ServerState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use maud::{html, Markup};
use serde::Deserialize;
use tenantry_core::{Slug, TenantStatus};
use tenantry_engine::JobView;
use tenantry_registry::{AuditFilter, BackupRecord, JobFilter, TenantRecord, TenantResourceRecord};
use tenantry_workflows::{
    invitation_state, resend_invitation, submit_backup, submit_move, submit_offboard,
    submit_rotation, submit_suspension, BackupFile, BackupRequest, Direction, InvitationView,
    MoveRequest, OffboardRequest, RotateRequest, Submitted, SuspendRequest, DEFAULT_GRACE_SECONDS,
};

/// Tenants per page of the list.
const PAGE_SIZE: i64 = 50;
/// How long the tenant page waits for the tenant's migration records before it says they were not read.
const SCHEMA_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Default, Deserialize)]
pub struct TenantListQuery {
    search: Option<String>,
    status: Option<String>,
    page: Option<String>,
}

pub(super) fn tenant_path(slug: &str) -> String {
    format!("/platform/tenants/{}", query_escape(slug))
}

fn list_link(search: &str, status: &str, page: i64) -> String {
    format!(
        "/platform/tenants?search={}&status={}&page={page}",
        query_escape(search),
        query_escape(status)
    )
}

/// `GET /platform/tenants` for a browser.
pub async fn tenants_page(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<TenantListQuery>,
) -> Result<Response, PageError> {
    let viewer = Viewer::new(&principal);
    let search = query.search.unwrap_or_default().trim().to_owned();
    let status_text = query.status.unwrap_or_default();
    let status = match status_text.as_str() {
        "" => None,
        raw => Some(TenantStatus::parse(raw).or_page(&viewer)?),
    };
    let page = query
        .page
        .and_then(|page| page.parse::<i64>().ok())
        .unwrap_or(1)
        .max(1);
    // One more than a page tells whether there is a next page.
    let mut tenants = state
        .platform
        .registry
        .list_tenants(
            (!search.is_empty()).then_some(search.as_str()),
            status,
            PAGE_SIZE + 1,
            (page - 1) * PAGE_SIZE,
        )
        .await
        .or_page(&viewer)?;
    let has_next = tenants.len() as i64 > PAGE_SIZE;
    tenants.truncate(PAGE_SIZE as usize);
    let filtered = !search.is_empty() || status.is_some();
    let mut status_options = vec![(String::new(), "Any status".to_owned(), false)];
    status_options.extend(TenantStatus::ALL.iter().map(|status| {
        (
            status.as_str().to_owned(),
            status.as_str().to_owned(),
            false,
        )
    }));
    let search_field = Field {
        input_type: "search",
        ..Field::text("search", "Search", &search)
    };
    let body = html! {
        (page_header(
            html! { "Tenants" },
            Some(html! { "Every customer with their own database, by slug." }),
            html! { @if viewer.is_admin() { a.button.primary href="/platform/tenants/new" { "New tenant" } } },
        ))
        form.filters method="get" action="/platform/tenants" role="search" {
            (search_field.render())
            (select_field("status", "Status", &status_options, &status_text, None))
            div.filter-actions {
                button type="submit" { "Filter" }
                @if filtered { a href="/platform/tenants" { "Clear" } }
            }
        }
        @if tenants.is_empty() {
            @if filtered || page > 1 {
                (empty_state("No tenants match these filters.", html! { a href="/platform/tenants" { "Clear the filters" } " to see every tenant." }))
            } @else {
                (empty_state("No tenants yet.", html! {
                    @if viewer.is_admin() {
                        "Provision the first one with " a href="/platform/tenants/new" { "New tenant" }
                        ", or from a shell: " code { "tenantry provision-tenant --slug acme --display-name \"Acme Health\" --admin-email admin@acme.example" }
                    } @else {
                        "A platform admin provisions tenants; they appear here."
                    }
                }))
            }
        } @else {
            div.table-wrap {
                table {
                    thead { tr {
                        th { "Slug" } th.wide-only { "Display name" } th { "Status" } th { "Plan" }
                        th.wide-only { "Region" } th.wide-only { "Server" } th { "Created" }
                    } }
                    tbody {
                        @for tenant in &tenants {
                            tr {
                                td { a href=(tenant_path(&tenant.slug)) { (tenant.slug) } }
                                td.wide-only { (tenant.display_name) }
                                td { (pill(tenant.status.as_str())) }
                                td { (tenant.plan) }
                                td.wide-only { (tenant.region) }
                                td.wide-only { (tenant.server_name) }
                                td { (time_ago(tenant.created_at)) }
                            }
                        }
                    }
                }
            }
            @if page > 1 || has_next {
            nav.pager aria-label="Pages" {
                @if page > 1 { a href=(list_link(&search, &status_text, page - 1)) rel="prev" { "Previous" } }
                span.muted { "Page " (page) }
                @if has_next { a href=(list_link(&search, &status_text, page + 1)) rel="next" { "Next page" } }
            }
            }
        }
    };
    Ok(html_response(
        StatusCode::OK,
        shell(Some(&viewer), Section::Tenants, "Tenants", body),
    ))
}

/// Versions as `3,4`.
fn versions(versions: &[i64]) -> String {
    versions
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A tenant's schema in words: `version 2, pending: 3,4`, or `version 4, at latest`, with any drift named.
fn schema_words(schema: &TenantSchemaView) -> Markup {
    let mut words = format!("version {}", schema.version);
    match schema.state.as_str() {
        "unreachable" | "not_migrated" => {
            let detail = schema
                .detail
                .as_deref()
                .unwrap_or("its migration records were not read");
            return html! { (pill(&schema.state)) " " span.schema-detail { (detail) } };
        }
        _ if !schema.pending.is_empty() => {
            words.push_str(&format!(", pending: {}", versions(&schema.pending)));
        }
        "latest" => words.push_str(", at latest"),
        _ => {}
    }
    for (found, what) in [
        (&schema.edited, "edited after they ran"),
        (&schema.unknown, "recorded but not in the files"),
        (&schema.dirty, "started and not finished"),
    ] {
        if !found.is_empty() {
            words.push_str(&format!("; {what}: {}", versions(found)));
        }
    }
    html! { (pill(&schema.state)) " " span.schema-detail { (words) } }
}

/// The tenant's schema against the files, read as the tenant. The page never fails over it: a read that fails
/// or takes too long is shown with its reason.
async fn schema_state(state: &ServerState, slug: &str) -> Markup {
    match tokio::time::timeout(SCHEMA_READ_TIMEOUT, read_tenant_schema(state, slug)).await {
        Ok(Ok(schema)) => schema_words(&schema),
        Ok(Err(error)) if error.status.is_server_error() => {
            // As for error pages: the detail goes to the log; the page names the code and its meaning.
            tracing::warn!(slug, code = %error.error.code, detail = %error.error.message, "tenant schema not read");
            html! {
                span.muted { "not read: " code { (error.error.code.as_str()) } " — " (error.error.code.meaning()) }
            }
        }
        Ok(Err(error)) => html! { span.muted { "not read: " (error.error.message) } },
        Err(_) => html! {
            span.muted { "not read: the tenant's database did not answer within " (SCHEMA_READ_TIMEOUT.as_secs()) " s" }
        },
    }
}

fn tenant_details(tenant: &TenantRecord, schema: Markup) -> Markup {
    html! {
        dl.details {
            div { dt { "Display name" } dd { (tenant.display_name) } }
            div { dt { "Status" } dd { (pill(tenant.status.as_str())) } }
            div { dt { "Plan" } dd { (tenant.plan) } }
            div { dt { "Region" } dd { (tenant.region) } }
            div { dt { "Server" } dd { a href="/platform/servers" { (tenant.server_name) } } }
            div { dt { "Database" } dd { code { (tenant.resource_name) } } }
            div { dt { "Schema" } dd.schema-state { (schema) } }
            div { dt { "Secret" } dd { code { (tenant.secret_ref) } } }
            div { dt { "First admin" } dd { (tenant.admin_email) } }
            div { dt { "Created" } dd { (time_ago(tenant.created_at)) } }
            div { dt { "Updated" } dd { (time_ago(tenant.updated_at)) } }
            @if let Some(labels) = tenant.labels.as_object().filter(|labels| !labels.is_empty()) {
                div { dt { "Labels" } dd {
                    @for (key, value) in labels {
                        span.label-chip { (key) "=" (value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string())) }
                    }
                } }
            }
        }
    }
}

/// The switches of a settings object (`modules`, `feature_flags`) as chips: those on first, then those off, each
/// by name.
/// The tenant's resources, one row per kind: where it lives, its name there, its secret and whether it is on.
fn resources_table(resources: &[TenantResourceRecord]) -> Markup {
    html! {
        div.table-wrap {
            table.resources {
                thead { tr {
                    th { "Kind" } th { "Server" } th.wide-only { "Name" } th.wide-only { "Secret" } th { "Status" }
                } }
                tbody {
                    @for resource in resources {
                        tr {
                            td { (resource.kind) }
                            td { a href="/platform/servers" { (resource.server_name) } }
                            td.wide-only { code { (resource.name) } }
                            td.wide-only { @if let Some(secret) = &resource.secret_name { code { (secret) } } @else { "-" } }
                            td { (pill(&resource.status)) }
                        }
                    }
                }
            }
        }
    }
}

fn switch_chips(switches: Option<&serde_json::Value>) -> Markup {
    let mut switches: Vec<(&String, bool)> = switches
        .and_then(serde_json::Value::as_object)
        .map(|switches| {
            switches
                .iter()
                .map(|(name, on)| (name, on.as_bool().unwrap_or(false)))
                .collect()
        })
        .unwrap_or_default();
    switches.sort_by(|(name_a, on_a), (name_b, on_b)| on_b.cmp(on_a).then(name_a.cmp(name_b)));
    html! {
        @if switches.is_empty() {
            span.muted { "none" }
        } @else {
            @for (name, on) in switches { (switch_chip(name, on)) }
        }
    }
}

/// The plan's effective settings as the tenant was given them (what tenantry's settings table in its database holds), or
/// nothing for a tenant provisioned before plans carried settings.
fn plan_settings(tenant: &TenantRecord) -> Option<Markup> {
    let settings = tenant
        .settings
        .as_object()
        .filter(|settings| !settings.is_empty())?;
    let whole = |key: &str| settings.get(key).and_then(serde_json::Value::as_u64);
    let currency = settings
        .get("currency")
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default();
    let monthly_cost = settings
        .get("monthly_cost")
        .and_then(serde_json::Value::as_f64);
    Some(html! {
        section.panel.plan-settings aria-labelledby="plan-settings-title" {
            h2 #plan-settings-title { "Plan settings" }
            dl.details {
                @if let Some(cost) = monthly_cost {
                    div { dt { "Monthly cost" } dd.monthly-cost { (money(cost, currency)) } }
                }
                @if let Some(limit) = whole("connection_limit") {
                    div { dt { "Connections" } dd { (limit) } }
                }
                @if let Some(timeout_ms) = whole("statement_timeout_ms") {
                    div { dt { "Statement timeout" } dd { (limit_millis(timeout_ms)) } }
                }
                @if let Some(qpm) = whole("rate_limit_qpm") {
                    div { dt { "Rate limit" } dd { (qpm) " queries / min" } }
                }
                @if let Some(sla_ms) = whole("query_sla_ms") {
                    div { dt { "Query SLA" } dd { (limit_millis(sla_ms)) } }
                }
                div.full-row { dt { "Modules" } dd.modules { (switch_chips(settings.get("modules"))) } }
                div.full-row { dt { "Feature flags" } dd.feature-flags { (switch_chips(settings.get("feature_flags"))) } }
            }
        }
    })
}

fn offboard_form(viewer: &Viewer, tenant: &TenantRecord) -> Markup {
    let purge_only = tenant.status == TenantStatus::Offboarded;
    html! {
        details.danger-zone {
            summary { "Offboard this tenant" }
            form.stack method="post" action={ (tenant_path(&tenant.slug)) "/offboard" } {
                (viewer.csrf_field())
                p {
                    "Offboarding disables the tenant's login and keeps its data. "
                    "With purge, the database, its role, the secrets and the registry row are removed for good."
                }
                @if purge_only {
                    input type="hidden" name="purge" value="true";
                    p { strong { "The tenant is already offboarded: this purges its data." } }
                } @else {
                    div.checkbox-field {
                        input #field-purge type="checkbox" name="purge" value="true";
                        label for="field-purge" { "Purge the data too" }
                    }
                }
                div { button.danger type="submit" { "Offboard" } }
            }
        }
    }
}

/// "Rotate credentials" for an active tenant: the grace period in seconds, posted to the API's path, which
/// answers a browser with the job's page.
fn rotation_form(viewer: &Viewer, tenant: &TenantRecord) -> Markup {
    let default_grace = DEFAULT_GRACE_SECONDS.to_string();
    let grace_field = Field {
        hint: Some("Seconds the old credentials keep working after the new ones are in the secrets (0 to 604800)."),
        autocomplete: Some("off"),
        required: true,
        ..Field::text("grace_seconds", "Grace period (seconds)", &default_grace)
    };
    html! {
        @if tenant.status == TenantStatus::Active {
            details.rotate-zone {
                summary { "Rotate credentials" }
                form.stack method="post" action={ (tenant_path(&tenant.slug)) "/rotate-credentials" } {
                    (viewer.csrf_field())
                    p {
                        "New credentials for every resource, written to its secret. The old ones keep working for the "
                        "grace period, so an application that re-reads its secret never fails a login; then they are refused."
                    }
                    (grace_field.render())
                    div { button.primary type="submit" { "Rotate credentials" } }
                }
            }
        }
    }
}

/// "Move to another server" for an active tenant: the target server's name, posted to the API's path, which
/// answers a browser with the job's page.
fn move_form(viewer: &Viewer, tenant: &TenantRecord) -> Markup {
    let server_field = Field {
        hint: Some("An active PostgreSQL server other than the tenant's; the source must have wal_level = logical."),
        autocomplete: Some("off"),
        required: true,
        ..Field::text("to_server", "Target server", "")
    };
    html! {
        @if tenant.status == TenantStatus::Active {
            details.move-zone {
                summary { "Move to another server" }
                form.stack method="post" action={ (tenant_path(&tenant.slug)) "/move" } {
                    (viewer.csrf_field())
                    p {
                        "The database is copied to the target with logical replication while the tenant keeps "
                        "working; writes are refused only for the cut-over. An undo at any point leaves the tenant "
                        "on " (tenant.server_name) ", working."
                    }
                    (server_field.render())
                    div { button.primary type="submit" { "Move" } }
                }
            }
        }
    }
}

/// Suspend (with its reason) for an active tenant, Resume for a suspended one, nothing for any other. Both post
/// to the API's paths, which answer a browser with the job's page.
fn suspension_form(viewer: &Viewer, tenant: &TenantRecord) -> Markup {
    let reason_field = Field {
        hint: Some("Required, up to 500 characters. Kept in the job and the audit trail."),
        autocomplete: Some("off"),
        required: true,
        ..Field::text("reason", "Reason", "")
    };
    html! {
        @match tenant.status {
            TenantStatus::Active => {
                details.danger-zone.suspend-zone {
                    summary { "Suspend this tenant" }
                    form.stack method="post" action={ (tenant_path(&tenant.slug)) "/suspend" } {
                        (viewer.csrf_field())
                        p {
                            "Suspending refuses the tenant's credentials on every resource and ends its open sessions. "
                            "Its data stays as it is, and Resume lets it back in."
                        }
                        (reason_field.render())
                        div { button.danger type="submit" { "Suspend" } }
                    }
                }
            }
            TenantStatus::Suspended => {
                form.resume-form method="post" action={ (tenant_path(&tenant.slug)) "/resume" } {
                    (viewer.csrf_field())
                    button.primary type="submit" { "Resume" }
                    " "
                    span.muted { "The tenant's credentials work again on every resource." }
                }
            }
            _ => {}
        }
    }
}

/// The tenant's backups, newest first (id, status, what each holds, stored size, when taken, when pruned), and
/// for admins of a tenant that can be backed up a "Back up now" button posting to the API's path.
fn backups_panel(viewer: &Viewer, tenant: &TenantRecord, backups: &[BackupRecord]) -> Markup {
    let can_back_up = matches!(
        tenant.status,
        TenantStatus::Active | TenantStatus::Suspended | TenantStatus::Offboarded
    );
    html! {
        h2 { "Backups" }
        @if backups.is_empty() {
            (empty_state("No backups of this tenant yet.", html! {
                "Take one with Back up now or `tenantry backups create " (tenant.slug) "`; a purge takes one first."
            }))
        } @else {
            div.table-wrap {
                table {
                    thead { tr { th { "Backup" } th { "Status" } th { "Resources" } th { "Stored" } th { "Taken" } th { "Expires" } } }
                    tbody {
                        @for backup in backups {
                            @let files: Vec<BackupFile> = serde_json::from_value(backup.resources.clone()).unwrap_or_default();
                            tr {
                                td { code { (backup.id) } }
                                td { (pill(&backup.status)) }
                                td { (files.iter().map(|file| file.kind.as_str()).collect::<Vec<_>>().join(", ")) }
                                td.num { (format!("{:.1} MB", files.iter().map(|file| file.sums.stored_bytes).sum::<u64>() as f64 / 1e6)) }
                                td { (time_ago(backup.created_at)) }
                                td { @if let Some(expires) = backup.expires_at { (time_ago(expires)) } @else { "never" } }
                            }
                        }
                    }
                }
            }
        }
        @if viewer.is_admin() && can_back_up {
            form.backup-form method="post" action={ (tenant_path(&tenant.slug)) "/backups" } {
                (viewer.csrf_field())
                button.primary type="submit" { "Back up now" }
                " "
                span.muted { "An encrypted, checksummed dump of every resource that holds data." }
            }
        }
    }
}

/// `POST /platform/tenants/{slug}/backups` from the tenant page's button: submit the backup job, then go to its
/// page.
pub async fn backup_submit(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(slug): Path<String>,
) -> Response {
    let viewer = Viewer::new(&principal);
    let submitted = async {
        let request = BackupRequest {
            slug: Slug::parse(&slug)?,
        };
        submit_backup(&state.platform, &request, &principal.actor(), None).await
    }
    .await;
    to_job_page(&state, &viewer, submitted)
}

/// `GET /platform/tenants/{slug}` for a browser. A slug with jobs but no registry row yet (provisioning, or a
/// failed attempt) still has a page: its jobs say what happened.
pub async fn tenant_page(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(slug): Path<String>,
) -> Result<Response, PageError> {
    let viewer = Viewer::new(&principal);
    let registry = &state.platform.registry;
    let tenant = registry.get_tenant(&slug).await.or_page(&viewer)?;
    let jobs = registry
        .list_jobs(&JobFilter {
            tenant_slug: Some(slug.clone()),
            status: None,
            limit: 50,
        })
        .await
        .or_page(&viewer)?;
    if tenant.is_none() && jobs.is_empty() {
        return Err(PageError::new(
            &viewer,
            ApiError::not_found(format!("tenant {slug:?}")),
        ));
    }
    let audit = registry
        .list_audit(&AuditFilter {
            tenant_slug: Some(slug.clone()),
            event_type: None,
            actor: None,
            since_millis: None,
            until_millis: None,
            limit: 50,
        })
        .await
        .or_page(&viewer)?;
    let resources = registry.tenant_resources(&slug).await.or_page(&viewer)?;
    let backups = registry.list_backups(Some(&slug)).await.or_page(&viewer)?;
    let invitation = invitation_state(&state.platform, &slug)
        .await
        .map_err(|error| PageError::new(&viewer, error))?;
    let schema = match &tenant {
        Some(_) => schema_state(&state, &slug).await,
        None => html! {},
    };
    let change_requests = match &tenant {
        Some(tenant) => super::change_requests::tenant_panel(&state, &viewer, tenant).await,
        None => html! {},
    };
    let job_views: Vec<JobView> = jobs.iter().map(|job| JobView::build(job, &[])).collect();
    let names = actor_names(registry, audit.iter().map(|event| event.actor.as_str())).await;
    let can_offboard = tenant.as_ref().is_some_and(|tenant| {
        matches!(
            tenant.status,
            TenantStatus::Active
                | TenantStatus::Suspended
                | TenantStatus::Failed
                | TenantStatus::Offboarded
        )
    });
    let body = html! {
        (page_header(
            html! { (slug) },
            tenant.as_ref().map(|tenant| html! { (tenant.display_name) }),
            html! { @if viewer.tenant_slug.is_none() { a.button href="/platform/tenants" { "All tenants" } } },
        ))
        (change_requests)
        @match &tenant {
            Some(tenant) => {
                div.panel { (tenant_details(tenant, schema)) }
                (invitation_panel(&viewer, tenant, invitation.as_ref()))
                @if !resources.is_empty() {
                    h2 { "Resources" }
                    (resources_table(&resources))
                }
                @if let Some(settings) = plan_settings(tenant) { (settings) }
                (backups_panel(&viewer, tenant, &backups))
            }
            None => {
                (empty_state("Not in the registry yet.", html! {
                    "No tenant row exists for this slug; the jobs below say why (still provisioning, or a failed attempt)."
                }))
            }
        }
        h2 { "Jobs" }
        @if job_views.is_empty() {
            (empty_state("No jobs for this tenant.", html! { "It was created before job records were kept." }))
        } @else {
            (jobs_table(&job_views))
        }
        h2 { "Audit" }
        @if audit.is_empty() {
            (empty_state("No audit events for this tenant.", html! { "Every change to it will be recorded here." }))
        } @else {
            (audit_table(&audit, &names, false))
            @if viewer.tenant_slug.is_none() {
                p { a href={ "/platform/audit?tenant=" (query_escape(&slug)) } { "Full audit trail" } }
            }
        }
        @if viewer.is_admin() {
            @if let Some(tenant) = &tenant { (rotation_form(&viewer, tenant)) }
            @if let Some(tenant) = &tenant { (move_form(&viewer, tenant)) }
        }
        @if viewer.is_admin() {
            @if let Some(tenant) = &tenant { (super::clone::clone_form(&viewer, tenant)) }
        }
        @if viewer.is_admin() {
            @if let Some(tenant) = &tenant { (suspension_form(&viewer, tenant)) }
        }
        @if viewer.is_admin() && can_offboard {
            @if let Some(tenant) = &tenant { (offboard_form(&viewer, tenant)) }
        }
    };
    Ok(html_response(
        StatusCode::OK,
        shell(Some(&viewer), Section::Tenants, &slug, body),
    ))
}

/// The first admin's invitation: where it stands, and (for admins of an active tenant) a button for a fresh one.
fn invitation_panel(
    viewer: &Viewer,
    tenant: &TenantRecord,
    invitation: Option<&InvitationView>,
) -> Markup {
    html! {
        h2 { "Invitation" }
        div.panel.invitation {
            @match invitation {
                None => p.muted { "No invitation was queued for " (tenant.admin_email) " (the tenant predates invitation e-mails)." },
                Some(invitation) => {
                    dl.details {
                        div { dt { "Status" } dd { (pill(&invitation.status)) } }
                        div { dt { "To" } dd { (invitation.recipient.as_deref().unwrap_or_default()) } }
                        div { dt { "Queued" } dd { (time_ago(invitation.queued_at)) } }
                        @if let Some(sent_at) = invitation.sent_at {
                            div { dt { "Sent" } dd { (time_ago(sent_at)) } }
                        }
                        div { dt { "Attempts" } dd { (invitation.attempts) } }
                        @if let Some(next) = invitation.next_attempt_at {
                            div { dt { "Next try" } dd { (time_ago(next)) } }
                        }
                        @if let Some(error) = &invitation.last_error {
                            div { dt { "Last error" } dd { (error) } }
                        }
                        div { dt { "Message-ID" } dd { code { (invitation.delivery_id) "@…" } } }
                    }
                    @if invitation.status == "waiting_for_smtp" {
                        p.muted {
                            "No SMTP server is configured (smtp_url), so no e-mail is sent. The first-sign-in link waits in the secret store as "
                            code { "tenant-invite-" (tenant.slug) } "."
                        }
                    }
                }
            }
            @if viewer.is_admin() && tenant.status == TenantStatus::Active {
                form method="post" action={ (tenant_path(&tenant.slug)) "/invitation" } {
                    (viewer.csrf_field())
                    button type="submit" { "Send a fresh invitation" }
                    " "
                    span.muted { "The old link stops working; the new one sets the admin's password." }
                }
            }
        }
    }
}

/// `POST /platform/tenants/{slug}/invitation` from the tenant page's button: a fresh invitation, then back to the
/// tenant page, which shows where it stands.
pub async fn resend_invitation_submit(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(slug): Path<String>,
) -> Response {
    let viewer = Viewer::new(&principal);
    let resent = async {
        let slug = Slug::parse(&slug)?;
        resend_invitation(&state.platform, &slug, &principal.actor()).await
    }
    .await;
    match resent {
        Ok(_) => see_other(&tenant_path(&slug)),
        Err(error) => PageError::new(&viewer, error).into_response(),
    }
}

/// The offboard form's fields.
#[derive(Debug, Default, Deserialize)]
pub struct OffboardFields {
    purge: Option<String>,
}

/// `POST /platform/tenants/{slug}/offboard` from a plain form: submit the job, then go to its page.
pub async fn offboard_submit(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(slug): Path<String>,
    ApiForm(fields): ApiForm<OffboardFields>,
) -> Response {
    let viewer = Viewer::new(&principal);
    let submitted = async {
        let request = OffboardRequest {
            slug: Slug::parse(&slug)?,
            purge: fields.purge.as_deref() == Some("true"),
            // The console's purge always takes its backup first.
            no_backup: false,
        };
        submit_offboard(&state.platform, &request, &principal.actor()).await
    }
    .await;
    to_job_page(&state, &viewer, submitted)
}

/// After a form submitted a job: its page, or the error as a page.
pub(super) fn to_job_page(
    state: &ServerState,
    viewer: &Viewer,
    submitted: Result<Submitted, tenantry_core::Error>,
) -> Response {
    match submitted {
        Ok(submitted) => {
            state.wake_workers.notify_one();
            see_other(&format!(
                "/platform/jobs/{}",
                query_escape(&submitted.job().id)
            ))
        }
        Err(error) => PageError::new(viewer, error).into_response(),
    }
}

/// The suspend form's fields.
#[derive(Debug, Default, Deserialize)]
pub struct SuspendFields {
    #[serde(default)]
    reason: String,
}

/// `POST /platform/tenants/{slug}/suspend` from the tenant page's form: submit the job, then go to its page.
pub async fn suspend_submit(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(slug): Path<String>,
    ApiForm(fields): ApiForm<SuspendFields>,
) -> Response {
    let request = Slug::parse(&slug).and_then(|slug| SuspendRequest::suspend(slug, &fields.reason));
    submit_suspension_page(&state, &principal, Direction::Suspend, request).await
}

/// The rotation form's fields.
#[derive(Debug, Default, Deserialize)]
pub struct RotateFields {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    grace_seconds: Option<String>,
}

/// `POST /platform/tenants/{slug}/rotate-credentials` from the tenant page's form: submit the job through the
/// API's submit function, then go to its page.
pub async fn rotate_submit(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(slug): Path<String>,
    ApiForm(fields): ApiForm<RotateFields>,
) -> Response {
    let submitted = async {
        let grace_seconds = match fields.grace_seconds.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(text.parse::<i64>().map_err(|_| {
                tenantry_core::Error::invalid_input("the grace period is a whole number of seconds")
            })?),
        };
        let kind = fields
            .kind
            .as_deref()
            .filter(|kind| !kind.trim().is_empty());
        let request = RotateRequest::new(Slug::parse(&slug)?, kind, grace_seconds)?;
        submit_rotation(&state.platform, &request, &principal.actor(), None).await
    }
    .await;
    to_job_page(&state, &Viewer::new(&principal), submitted)
}

/// The move form's fields.
#[derive(Debug, Default, Deserialize)]
pub struct MoveFields {
    #[serde(default)]
    to_server: String,
}

/// `POST /platform/tenants/{slug}/move` from the tenant page's form: submit the job through the API's submit
/// function, then go to its page.
pub async fn move_submit(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(slug): Path<String>,
    ApiForm(fields): ApiForm<MoveFields>,
) -> Response {
    let submitted = async {
        let request = MoveRequest {
            slug: Slug::parse(&slug)?,
            to_server: fields.to_server.trim().to_owned(),
        };
        submit_move(&state.platform, &request, &principal.actor(), None).await
    }
    .await;
    to_job_page(&state, &Viewer::new(&principal), submitted)
}

/// `POST /platform/tenants/{slug}/resume` from the tenant page's button: submit the job, then go to its page.
pub async fn resume_submit(
    State(state): State<ServerState>,
    Extension(principal): Extension<Principal>,
    Path(slug): Path<String>,
) -> Response {
    let request = Slug::parse(&slug).map(SuspendRequest::resume);
    submit_suspension_page(&state, &principal, Direction::Resume, request).await
}

/// Submits a suspension or resumption from a form, through the API's one submit function, and answers with the
/// job's page.
async fn submit_suspension_page(
    state: &ServerState,
    principal: &Principal,
    direction: Direction,
    request: Result<SuspendRequest, tenantry_core::Error>,
) -> Response {
    let submitted = match request {
        Ok(request) => {
            submit_suspension(
                &state.platform,
                direction,
                &request,
                &principal.actor(),
                None,
            )
            .await
        }
        Err(error) => Err(error),
    };
    to_job_page(state, &Viewer::new(principal), submitted)
}
