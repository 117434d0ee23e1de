//! The console's page shell and the small pieces every page uses: navigation, status pills, relative times,
//! durations, form fields with their errors, empty states, and the HTML response with its security headers.

use crate::auth::{Credential, Principal, CSRF_FIELD};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use tenantry_core::PlatformRole;
use tenantry_registry::now_millis;

/// The signed-in operator as pages need them: who, what they may do, and the token their forms carry.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub email: String,
    /// The audit actor (`user:<id>`), as jobs record who asked for them.
    pub actor: String,
    pub role: PlatformRole,
    /// The one tenant a `TENANT_ADMIN` sees; `None` for the platform roles.
    pub tenant_slug: Option<String>,
    /// The session's CSRF token; empty for a bearer-token caller, whose requests need none.
    pub csrf_token: String,
}

impl Viewer {
    pub fn new(principal: &Principal) -> Viewer {
        let csrf_token = match &principal.credential {
            Credential::Session { csrf_token, .. } => csrf_token.clone(),
            Credential::Token { .. } => String::new(),
        };
        Viewer {
            email: principal.email.clone(),
            actor: principal.actor(),
            role: principal.role,
            tenant_slug: principal
                .is_tenant_scoped()
                .then(|| principal.tenant_slug.clone().unwrap_or_default()),
            csrf_token,
        }
    }

    /// Provision, offboard, add and drain servers: admins only (the policy refuses everyone else anyway).
    pub fn is_admin(&self) -> bool {
        self.role == PlatformRole::Admin
    }

    /// Retry and roll back jobs: admins and support.
    pub fn can_operate(&self) -> bool {
        matches!(self.role, PlatformRole::Admin | PlatformRole::Support)
    }

    /// Approve or reject a job waiting for approval: admins, and never the one who asked for it (the API refuses
    /// that too; the page just does not offer it).
    pub fn can_decide(&self, requested_by: &str) -> bool {
        self.is_admin() && self.actor != requested_by
    }

    /// The hidden field that lets a plain HTML form pass the CSRF check.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name=(CSRF_FIELD) value=(self.csrf_token); }
    }
}

/// The top-level sections, for the navigation's current item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Tenants,
    Jobs,
    Rollouts,
    Notifications,
    Servers,
    Costs,
    Audit,
    ChangeRequests,
    None,
}

const SECTIONS: [(Section, &str, &str); 8] = [
    (Section::Tenants, "Tenants", "/platform/tenants"),
    (Section::Jobs, "Jobs", "/platform/jobs"),
    (Section::Rollouts, "Rollouts", "/platform/rollouts"),
    (
        Section::Notifications,
        "Notifications",
        "/platform/notifications",
    ),
    (Section::Servers, "Servers", "/platform/servers"),
    (Section::Costs, "Costs", "/platform/costs"),
    (Section::Audit, "Audit", "/platform/audit"),
    (
        Section::ChangeRequests,
        "Changes",
        "/platform/change-requests",
    ),
];

/// A whole page: head, top bar with navigation and the operator, and `body` as the main content.
pub fn shell(viewer: Option<&Viewer>, section: Section, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(viewer) = viewer {
                    meta name="csrf-token" content=(viewer.csrf_token);
                }
                title { (title) " · tenantry" }
                link rel="stylesheet" href=(super::assets::url("console.css"));
                script src=(super::assets::url("console.js")) defer {}
            }
            body {
                a.skip-link href="#main" { "Skip to content" }
                header.topbar {
                    a.brand href="/platform" { span.brand-mark aria-hidden="true" {} "tenantry" }
                    @if let Some(viewer) = viewer {
                        nav.mainnav aria-label="Main" {
                            // A tenant admin's console is their tenant and its change requests; the platform's
                            // sections would all be 404 to them.
                            @if let Some(slug) = &viewer.tenant_slug {
                                a href={ "/platform/tenants/" (query_escape(slug)) } { "My tenant" }
                                a href="/platform/change-requests" { "Change requests" }
                            }
                            @for (item, label, href) in SECTIONS.iter().copied().filter(|_| viewer.tenant_slug.is_none()) {
                                @if item == section {
                                    a href=(href) aria-current="page" { (label) }
                                } @else {
                                    a href=(href) { (label) }
                                }
                            }
                        }
                        div.whoami {
                            span.whoami-email title=(viewer.email) { (viewer.email) }
                            span.role { (role_label(viewer.role)) }
                            form.inline method="post" action="/platform/logout" {
                                (viewer.csrf_field())
                                button.link-button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main #main tabindex="-1" { (body) }
            }
        }
    }
}

fn role_label(role: PlatformRole) -> &'static str {
    match role {
        PlatformRole::Admin => "admin",
        PlatformRole::Support => "support",
        PlatformRole::ReadOnly => "read-only",
        PlatformRole::TenantAdmin => "tenant admin",
    }
}

/// The page's heading row: a title, an optional subtitle, and actions on the right.
pub fn page_header(title: Markup, subtitle: Option<Markup>, actions: Markup) -> Markup {
    html! {
        div.page-header {
            div.page-title {
                h1 { (title) }
                @if let Some(subtitle) = subtitle { p.subtitle { (subtitle) } }
            }
            div.page-actions { (actions) }
        }
    }
}

/// A status pill. Its colour comes from the status alone (the stylesheet maps `pill-<status>`), so a status
/// looks the same on every page.
pub fn pill(status: &str) -> Markup {
    html! { span class={ "pill pill-" (status) } { (status.replace('_', " ")) } }
}

/// Unix milliseconds as `2025-01-02 13:04:05 UTC`.
pub fn exact_time(millis: i64) -> String {
    let rfc3339 = tenantry_engine::format_millis(millis);
    let seconds = rfc3339.split('.').next().unwrap_or(&rfc3339);
    format!("{} UTC", seconds.trim_end_matches('Z').replace('T', " "))
}

/// "12 s ago", "in 3 min", relative to `now_millis`.
pub fn relative_time(millis: i64, now_millis: i64) -> String {
    let delta_secs = (now_millis - millis) / 1000;
    let magnitude = delta_secs.abs();
    if magnitude < 5 {
        return if delta_secs >= 0 {
            "just now"
        } else {
            "in a moment"
        }
        .to_owned();
    }
    let amount = if magnitude < 60 {
        format!("{magnitude} s")
    } else if magnitude < 3600 {
        format!("{} min", magnitude / 60)
    } else if magnitude < 86_400 {
        format!("{} h", magnitude / 3600)
    } else {
        format!("{} d", magnitude / 86_400)
    };
    if delta_secs >= 0 {
        format!("{amount} ago")
    } else {
        format!("in {amount}")
    }
}

/// A time shown relative, with the exact timestamp on hover; the script keeps the relative text current.
pub fn time_ago(millis: i64) -> Markup {
    html! {
        time datetime=(tenantry_engine::format_millis(millis)) title=(exact_time(millis)) data-relative {
            (relative_time(millis, now_millis()))
        }
    }
}

/// An RFC 3339 time (as in a job view) shown relative, or a dash.
pub fn time_ago_rfc3339(rfc3339: Option<&str>) -> Markup {
    match rfc3339.and_then(parse_rfc3339_millis) {
        Some(millis) => time_ago(millis),
        None => html! { span.muted { "—" } },
    }
}

/// Milliseconds since the epoch of an RFC 3339 UTC time (as a job view writes them).
pub fn parse_rfc3339_millis(rfc3339: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339(rfc3339).ok()?;
    let since_epoch = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since_epoch.as_millis()).ok()
}

/// A phase or job duration: "4 ms", "1.3 s", "2 min 05 s".
pub fn duration(millis: i64) -> String {
    let millis = millis.max(0);
    if millis < 1000 {
        format!("{millis} ms")
    } else if millis < 60_000 {
        format!("{:.1} s", millis as f64 / 1000.0)
    } else {
        format!("{} min {:02} s", millis / 60_000, (millis % 60_000) / 1000)
    }
}

/// An amount of money as the console shows it everywhere: two decimals and the currency, `98.00 USD`.
pub fn money(amount: f64, currency: &str) -> String {
    format!("{amount:.2} {currency}")
}

/// A named switch (a module or a feature flag) as a chip: on ones plain, off ones muted and struck through, with
/// the state spelled out for screen readers.
pub fn switch_chip(name: &str, on: bool) -> Markup {
    html! {
        span class={ "label-chip" @if !on { " chip-off" } } title=(if on { "on" } else { "off" }) {
            (name) span.visually-hidden { (if on { " (on)" } else { " (off)" }) }
        }
    }
}

/// A configured limit in milliseconds as people write it: `30 s` when it is whole seconds, else `500 ms`.
pub fn limit_millis(millis: u64) -> String {
    // A match rather than `is_multiple_of`, which is newer than the workspace's rust-version.
    match (millis / 1000, millis % 1000) {
        (seconds @ 1.., 0) => format!("{seconds} s"),
        _ => format!("{millis} ms"),
    }
}

/// What an empty list says: what is missing, and what to do next.
pub fn empty_state(title: &str, next_step: Markup) -> Markup {
    html! {
        div.empty-state {
            p.empty-title { (title) }
            p.empty-next { (next_step) }
        }
    }
}

/// A labelled form field with an optional hint and error, wired for screen readers.
pub struct Field<'a> {
    pub name: &'a str,
    pub label: &'a str,
    pub value: &'a str,
    pub input_type: &'a str,
    pub hint: Option<&'a str>,
    pub error: Option<&'a str>,
    pub autocomplete: Option<&'a str>,
    pub required: bool,
    /// The id of a `<datalist>` of suggestions.
    pub list: Option<&'a str>,
    pub extra_class: &'a str,
    /// The element id, where one page holds the same field name more than once (one decision form per row);
    /// `field-{name}` when left out.
    pub id: Option<&'a str>,
}

impl<'a> Field<'a> {
    pub fn text(name: &'a str, label: &'a str, value: &'a str) -> Field<'a> {
        Field {
            name,
            label,
            value,
            input_type: "text",
            hint: None,
            error: None,
            autocomplete: None,
            required: false,
            list: None,
            extra_class: "",
            id: None,
        }
    }

    pub fn render(&self) -> Markup {
        let id = self
            .id
            .map_or_else(|| format!("field-{}", self.name), str::to_owned);
        let hint_id = format!("{id}-hint");
        let error_id = format!("{id}-error");
        let described_by = match self.hint {
            Some(_) => format!("{hint_id} {error_id}"),
            None => error_id.clone(),
        };
        html! {
            div class={ "field " (self.extra_class) } data-field=(self.name) {
                label for=(id) { (self.label) }
                input id=(id) name=(self.name) type=(self.input_type) value=(self.value)
                    autocomplete=[self.autocomplete] list=[self.list] aria-describedby=(described_by)
                    aria-invalid=[self.error.map(|_| "true")] required[self.required];
                @if let Some(hint) = self.hint { p.hint id=(hint_id) { (hint) } }
                p.field-error id=(error_id) role="alert" { @if let Some(error) = self.error { (error) } }
            }
        }
    }
}

/// A `<select>` with a label and an error slot, like [`Field`].
pub fn select_field(
    name: &str,
    label: &str,
    options: &[(String, String, bool)],
    selected: &str,
    error: Option<&str>,
) -> Markup {
    let id = format!("field-{name}");
    let error_id = format!("{id}-error");
    html! {
        div.field data-field=(name) {
            label for=(id) { (label) }
            select id=(id) name=(name) aria-describedby=(error_id) aria-invalid=[error.map(|_| "true")] {
                @for (value, text, disabled) in options {
                    option value=(value) selected[value == selected] disabled[*disabled] { (text) }
                }
            }
            p.field-error id=(error_id) role="alert" { @if let Some(error) = error { (error) } }
        }
    }
}

/// An HTML page response. Pages hold the session's CSRF token, so they are never cached; the policy allows only
/// this origin's own scripts and styles.
pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// `303 See Other` to a console path: where a form post sends the browser next.
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// A job id short enough for a table: its last 8 characters. Job ids are UUIDv7, whose leading digits are a
/// timestamp shared by jobs made close together; the trailing ones are random.
pub fn short_id(id: &str) -> String {
    let n_chars = id.chars().count();
    id.chars().skip(n_chars.saturating_sub(8)).collect()
}

/// Percent-encodes a query value (everything but unreserved characters).
pub fn query_escape(value: &str) -> String {
    value
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_back_and_show_relative() {
        let millis = 1_735_823_045_123;
        let rfc3339 = tenantry_engine::format_millis(millis);
        assert_eq!(parse_rfc3339_millis(&rfc3339), Some(millis));
        assert_eq!(exact_time(millis), "2025-01-02 13:04:05 UTC");
        assert_eq!(relative_time(millis, millis + 12_000), "12 s ago");
        assert_eq!(relative_time(millis, millis + 3 * 60_000), "3 min ago");
        assert_eq!(relative_time(millis + 7_200_000, millis), "in 2 h");
        assert_eq!(relative_time(millis, millis + 1000), "just now");
        assert_eq!(relative_time(millis + 2000, millis), "in a moment");
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(duration(4), "4 ms");
        assert_eq!(duration(1340), "1.3 s");
        assert_eq!(duration(125_000), "2 min 05 s");
    }

    #[test]
    fn money_has_two_decimals_and_its_currency() {
        assert_eq!(money(98.0, "USD"), "98.00 USD");
        assert_eq!(money(1234.5, "EUR"), "1234.50 EUR");
        assert_eq!(limit_millis(60_000), "60 s");
        assert_eq!(limit_millis(500), "500 ms");
        assert_eq!(limit_millis(1500), "1500 ms");
    }

    #[test]
    fn markup_escapes_data() {
        let markup = pill("<script>");
        assert!(!markup.into_string().contains("<script>"));
        assert_eq!(query_escape("a b&c/é"), "a%20b%26c%2F%C3%A9");
    }
}
