//! The first admin's invitation: its link (`invitation_url` with the tenant's slug and a fresh token), the e-mail
//! made from the operator's template, its sending from the outbox, and `invitations resend`.
//!
//! The token goes to one place, the e-mail. Until the e-mail is sent its link waits, encrypted, in the secret
//! store (`tenant-invite-<slug>`); the sender reads it there, so no outbox row ever holds it, and deletes it once
//! the send is recorded. A crash between the send and its record sends the same link again with the same
//! Message-ID. The admin seed stores the hash of a password nobody is told: the link is how the first admin
//! chooses one, so there is no one-time password to hand over.

use crate::platform::Platform;
use crate::registry_error;
use minijinja::Environment;
use std::path::Path;
use tenantry_core::{Error as CodedError, ErrorCode, Slug, TenantStatus};
use tenantry_providers::credentials::{self, SecretString};
use tenantry_providers::engines::AdminSeed;
use tenantry_providers::mail::{self, OutgoingMail, SmtpEndpoint};
use tenantry_registry::{NewAuditEvent, NotificationRecord, DELIVERY_DEAD, DELIVERY_SENT};

/// The secret store's name of the SMTP password (`tenantry secrets set smtp-password`).
pub const SMTP_PASSWORD_SECRET: &str = "smtp-password";

/// The parts of an invitation template, as files of a template directory.
const TEMPLATE_FILES: [&str; 3] = ["subject.txt", "body.txt", "body.html"];

/// The e-mail's template: a subject, a plain-text body and an HTML body (minijinja; `.html` is HTML-escaped).
/// Variables: `tenant` (the slug), `display_name`, `admin_email`, `link`.
#[derive(Debug)]
pub struct InvitationTemplate {
    environment: Environment<'static>,
}

/// An invitation e-mail, rendered.
#[derive(Debug)]
pub struct RenderedInvitation {
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl InvitationTemplate {
    /// The template compiled into tenantry (`crates/tenantry-workflows/templates/invitation`).
    pub fn bundled() -> InvitationTemplate {
        InvitationTemplate::from_sources([
            include_str!("../templates/invitation/subject.txt").to_owned(),
            include_str!("../templates/invitation/body.txt").to_owned(),
            include_str!("../templates/invitation/body.html").to_owned(),
        ])
        .expect("the bundled invitation template renders")
    }

    /// The operator's template: a directory with `subject.txt`, `body.txt` and `body.html`. Refused, with the
    /// file and the reason, when a file is missing, does not parse, names a variable that does not exist, or
    /// leaves the link out.
    pub fn load(directory: &Path) -> Result<InvitationTemplate, String> {
        let mut sources = Vec::new();
        for file in TEMPLATE_FILES {
            let path = directory.join(file);
            sources.push(std::fs::read_to_string(&path).map_err(|error| {
                format!(
                    "invitation template {}: {error} (a template directory holds {})",
                    path.display(),
                    TEMPLATE_FILES.join(", ")
                )
            })?);
        }
        let sources: [String; 3] = sources.try_into().expect("three files");
        InvitationTemplate::from_sources(sources)
            .map_err(|error| format!("invitation template {}: {error}", directory.display()))
    }

    fn from_sources(sources: [String; 3]) -> Result<InvitationTemplate, String> {
        let mut environment = Environment::new();
        // A misspelt variable is an error when the template is loaded, not an empty hole in a sent e-mail.
        environment.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, source) in TEMPLATE_FILES.into_iter().zip(sources) {
            environment
                .add_template_owned(name, source)
                .map_err(|error| format!("{name}: {error}"))?;
        }
        let template = InvitationTemplate { environment };
        // Rendered once with sample values: every variable must exist, and both bodies must carry the link.
        let sample_token = "SAMPLE-TOKEN";
        let sample_link = format!("https://sample.invalid/first-sign-in?token={sample_token}");
        let rendered = template.render(
            "sample",
            "Sample Tenant",
            "admin@sample.invalid",
            &sample_link,
        )?;
        // The HTML body has the link HTML-escaped (`/` as `&#x2f;`), so the token is what is looked for there.
        for (name, body, needle) in [
            ("body.txt", &rendered.text, sample_link.as_str()),
            ("body.html", &rendered.html, sample_token),
        ] {
            if !body.contains(needle) {
                return Err(format!(
                    "{name} does not contain {{{{ link }}}}: the admin could not sign in"
                ));
            }
        }
        if rendered.subject.trim().is_empty() || rendered.subject.contains('\n') {
            return Err("subject.txt must render to one non-empty line".into());
        }
        Ok(template)
    }

    /// Renders the e-mail for one tenant's admin.
    pub fn render(
        &self,
        slug: &str,
        display_name: &str,
        admin_email: &str,
        link: &str,
    ) -> Result<RenderedInvitation, String> {
        let context = minijinja::context! {
            tenant => slug,
            display_name => display_name,
            admin_email => admin_email,
            link => link,
        };
        let render = |name: &str| {
            self.environment
                .get_template(name)
                .and_then(|template| template.render(&context))
                .map_err(|error| format!("{name}: {error}"))
        };
        Ok(RenderedInvitation {
            subject: render("subject.txt")?.trim().to_owned(),
            text: render("body.txt")?,
            html: render("body.html")?,
        })
    }
}

/// How the invitation reaches the first admin.
#[derive(Debug, Clone)]
pub struct InvitationSettings {
    /// The link's form: `{slug}` and `{token}` are filled in (`invitation_url`).
    pub url: String,
    /// The SMTP server (`smtp_url`); `None`: no e-mail is sent and the link waits in the secret store.
    pub smtp: Option<SmtpEndpoint>,
    /// The sender (`smtp_from`).
    pub from: String,
    pub template: std::sync::Arc<InvitationTemplate>,
}

impl InvitationSettings {
    /// No SMTP server, the bundled template.
    pub fn without_email(url: String) -> InvitationSettings {
        InvitationSettings {
            url,
            smtp: None,
            from: "tenantry <tenantry@localhost>".into(),
            template: std::sync::Arc::new(InvitationTemplate::bundled()),
        }
    }
}

/// Checks an `invitation_url`: it must carry `{token}` and name no other placeholder than `{slug}`.
pub fn check_url_form(form: &str) -> Result<(), String> {
    if !form.contains("{token}") {
        return Err(format!(
            "invitation_url {form:?} has no {{token}}: the link could not carry the admin's token"
        ));
    }
    let rest = form.replace("{token}", "").replace("{slug}", "");
    if rest.contains('{') || rest.contains('}') {
        return Err(format!(
            "invitation_url {form:?}: the placeholders are {{slug}} and {{token}}"
        ));
    }
    Ok(())
}

/// The link for a tenant's admin.
pub fn invitation_link(form: &str, slug: &Slug, token: &SecretString) -> SecretString {
    SecretString::new(
        form.replace("{slug}", slug.as_str())
            .replace("{token}", token.expose()),
    )
}

/// Why an e-mail attempt failed: worth another attempt, or never going to work.
pub(crate) enum SendFailure {
    Retry(String),
    Permanent(String),
}

/// The Message-ID of a delivery: its id at the sender's domain.
fn message_id(delivery_id: &str, from: &str) -> String {
    let domain = from
        .rsplit_once('@')
        .map(|(_, domain)| domain.trim_end_matches('>').trim())
        .filter(|domain| !domain.is_empty())
        .unwrap_or("tenantry.invalid");
    format!("{delivery_id}@{domain}")
}

/// Sends one invitation e-mail. Returns the link it carried, to be forgotten once the send is recorded.
pub(crate) async fn send_invitation(
    platform: &Platform,
    delivery: &NotificationRecord,
) -> Result<SecretString, SendFailure> {
    let settings = &platform.settings.invitations;
    let Some(endpoint) = &settings.smtp else {
        return Err(SendFailure::Retry(
            "no SMTP server is configured (smtp_url)".into(),
        ));
    };
    let (Some(slug), Some(recipient)) = (&delivery.tenant_slug, &delivery.recipient) else {
        return Err(SendFailure::Permanent(
            "the delivery names no tenant or recipient".into(),
        ));
    };
    let slug = Slug::parse(slug).map_err(|error| SendFailure::Permanent(error.message))?;
    let tenant = match platform.registry.get_tenant(slug.as_str()).await {
        Ok(Some(tenant)) => tenant,
        Ok(None) => {
            return Err(SendFailure::Permanent(
                "the tenant is no longer registered".into(),
            ))
        }
        Err(error) => return Err(SendFailure::Retry(format!("registry: {error}"))),
    };
    let link = match platform.secrets.get(&slug.invitation_secret_name()).await {
        Ok(Some(link)) => link,
        Ok(None) => {
            return Err(SendFailure::Permanent(format!(
                "the invitation link is no longer in the secret store ({} was sent, superseded or offboarded)",
                slug.invitation_secret_name()
            )))
        }
        Err(error) => return Err(SendFailure::Retry(format!("secret store: {error}"))),
    };
    let password = if endpoint.user.is_some() {
        match platform.secrets.get(SMTP_PASSWORD_SECRET).await {
            Ok(password) => password,
            Err(error) => return Err(SendFailure::Retry(format!("secret store: {error}"))),
        }
    } else {
        None
    };
    let rendered = settings
        .template
        .render(
            slug.as_str(),
            &tenant.display_name,
            recipient,
            link.expose(),
        )
        .map_err(SendFailure::Permanent)?;
    let message_id = message_id(&delivery.id, &settings.from);
    mail::send(
        endpoint,
        password.as_ref(),
        &OutgoingMail {
            message_id: &message_id,
            from: &settings.from,
            to: recipient,
            subject: &rendered.subject,
            text: &rendered.text,
            html: &rendered.html,
        },
    )
    .await
    .map_err(SendFailure::Retry)?;
    Ok(link)
}

/// Deletes the secret store's copy of a link that was sent, unless a newer invitation replaced it meanwhile.
pub(crate) async fn forget_sent_link(platform: &Platform, slug: &str, sent: &SecretString) {
    let Ok(slug) = Slug::parse(slug) else { return };
    let name = slug.invitation_secret_name();
    match platform.secrets.get(&name).await {
        Ok(Some(current)) if current.expose() == sent.expose() => {
            if let Err(error) = platform.secrets.delete(&name).await {
                tracing::warn!(secret = %name, %error, "the sent invitation's link stays in the secret store; doctor names it");
            }
        }
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(secret = %name, %error, "the sent invitation's link stays in the secret store; doctor names it")
        }
    }
}

/// A tenant's invitation as people are shown it.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InvitationView {
    /// `sent`, `pending` (being sent or retried), `waiting_for_smtp` (no `smtp_url` configured: the link waits in
    /// the secret store), or `dead` (given up, superseded, or its link gone).
    pub status: String,
    pub recipient: Option<String>,
    /// The e-mail's Message-ID is this id at the sender's domain.
    pub delivery_id: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// Unix milliseconds.
    pub queued_at: i64,
    pub sent_at: Option<i64>,
    pub next_attempt_at: Option<i64>,
}

/// The state of a tenant's newest invitation (`None`: none was ever queued, e.g. a tenant made before e-mail).
pub async fn invitation_state(
    platform: &Platform,
    slug: &str,
) -> Result<Option<InvitationView>, CodedError> {
    let Some(delivery) = platform
        .registry
        .latest_invitation(slug)
        .await
        .map_err(registry_error)?
    else {
        return Ok(None);
    };
    let status = match delivery.status.as_str() {
        DELIVERY_SENT | DELIVERY_DEAD => delivery.status.clone(),
        _ if platform.settings.invitations.smtp.is_none() => "waiting_for_smtp".into(),
        _ => delivery.status.clone(),
    };
    Ok(Some(InvitationView {
        next_attempt_at: (status == "pending").then_some(delivery.next_attempt_at),
        status,
        recipient: delivery.recipient,
        delivery_id: delivery.id,
        attempts: delivery.attempts,
        last_error: delivery.last_error,
        queued_at: delivery.created_at,
        sent_at: delivery.sent_at,
    }))
}

/// What `invitations resend` did.
#[derive(Debug, Clone, serde::Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Resent {
    pub tenant: String,
    pub recipient: String,
    /// `true`: an e-mail is queued; `false`: no SMTP server, the link waits in the secret store.
    pub emailed: bool,
    /// Where the link waits until it is sent.
    pub secret: String,
}

/// Makes a fresh invitation for an active tenant's first admin: a new token (the admin seed runs again, so the
/// old link stops working, and with it any password the admin set: the new link sets one), its link in the
/// secret store, and an e-mail queued (audited `INVITATION_RESENT`). A crash part-way leaves at worst a link
/// that does not work; running it again makes a good one.
pub async fn resend(platform: &Platform, slug: &Slug, actor: &str) -> Result<Resent, CodedError> {
    let tenant = platform
        .registry
        .get_tenant(slug.as_str())
        .await
        .map_err(registry_error)?
        .ok_or_else(|| {
            CodedError::new(
                ErrorCode::NotFound,
                format!("tenant {:?} not found", slug.as_str()),
            )
        })?;
    if tenant.status != TenantStatus::Active {
        return Err(CodedError::new(
            ErrorCode::Conflict,
            format!(
                "tenant {:?} is {}: only an active tenant's admin can be invited",
                slug.as_str(),
                tenant.status.as_str()
            ),
        ));
    }
    let server_record = platform
        .registry
        .get_server(&tenant.server_name)
        .await
        .map_err(registry_error)?;
    let server = platform
        .tenant_server_for(&server_record, &tenant.plan)
        .await?;
    let tenant_url = platform
        .secrets
        .get(&slug.secret_name())
        .await
        .map_err(|error| {
            CodedError::new(
                ErrorCode::ProvisioningUnavailable,
                format!("secret store: {error}"),
            )
        })?
        .ok_or_else(|| {
            CodedError::new(
                ErrorCode::PartialState,
                format!(
                    "secret {:?} is missing (run `tenantry doctor`)",
                    slug.secret_name()
                ),
            )
        })?;
    let statements = platform
        .settings
        .tenant_schema
        .operator_statements(server.engine())?;
    let token = credentials::random_token(32);
    let unknown_password = credentials::random_token(18);
    let password_hash = credentials::hash_generated_password(&unknown_password)
        .map_err(|message| CodedError::new(ErrorCode::Internal, message))?;
    // The link first, then the token's hash: a crash between them leaves the old link in the store, which no
    // longer works once the hash changes; never a working link nobody can be sent.
    let link = invitation_link(&platform.settings.invitations.url, slug, &token);
    platform
        .secrets
        .put(&slug.invitation_secret_name(), &link)
        .await
        .map_err(|error| {
            CodedError::new(
                ErrorCode::ProvisioningUnavailable,
                format!("secret store: {error}"),
            )
        })?;
    server
        .seed_admin(
            &tenant_url,
            &AdminSeed {
                sql: &statements[0].sql,
                email: &tenant.admin_email,
                password_hash: &password_hash,
                invitation_token_hash: &credentials::hash_token(&token),
            },
        )
        .await
        .map_err(|error| CodedError::new(ErrorCode::AdminSeedFailed, error.to_string()))?;
    // The audit event queues the e-mail in its own transaction (and ends an older one not sent yet).
    platform
        .registry
        .record_audit(&NewAuditEvent {
            actor: actor.to_owned(),
            event_type: "INVITATION_RESENT",
            tenant_slug: Some(slug.as_str().to_owned()),
            job_id: None,
            details: serde_json::json!({ "recipient": tenant.admin_email }),
        })
        .await
        .map_err(registry_error)?;
    platform.outbox_wake.notify_one();
    Ok(Resent {
        tenant: slug.as_str().to_owned(),
        recipient: tenant.admin_email,
        emailed: platform.settings.invitations.smtp.is_some(),
        secret: slug.invitation_secret_name(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bundled_template_renders_the_link_in_both_bodies_and_escapes_html() {
        let rendered = InvitationTemplate::bundled()
            .render(
                "acme",
                "Acme <Health>",
                "admin@acme.example",
                "https://acme.example/s?token=T&x=1",
            )
            .unwrap();
        assert_eq!(rendered.subject, "You are invited to Acme <Health>");
        assert!(rendered.text.contains("https://acme.example/s?token=T&x=1"));
        assert!(
            rendered.html.contains("Acme &lt;Health&gt;"),
            "{}",
            rendered.html
        );
        assert!(
            rendered.html.contains("token=T&amp;x=1"),
            "{}",
            rendered.html
        );
    }

    #[test]
    fn a_template_that_does_not_parse_names_an_unknown_variable_or_drops_the_link_is_refused() {
        let good = || {
            [
                "Welcome to {{ display_name }}".to_owned(),
                "{{ link }}".to_owned(),
                "<a href=\"{{ link }}\">sign in</a>".to_owned(),
            ]
        };
        assert!(InvitationTemplate::from_sources(good()).is_ok());
        let mut unclosed = good();
        unclosed[0] = "Welcome to {{ display_name".into();
        let error = InvitationTemplate::from_sources(unclosed).unwrap_err();
        assert!(error.contains("subject.txt"), "{error}");
        let mut misspelt = good();
        misspelt[1] = "{{ link }} {{ dispaly_name }}".into();
        let error = InvitationTemplate::from_sources(misspelt).unwrap_err();
        assert!(error.contains("body.txt"), "{error}");
        let mut no_link = good();
        no_link[2] = "<p>hello</p>".into();
        let error = InvitationTemplate::from_sources(no_link).unwrap_err();
        assert!(
            error.contains("body.html") && error.contains("link"),
            "{error}"
        );
    }

    #[test]
    fn the_link_form_needs_the_token_and_knows_two_placeholders() {
        assert!(check_url_form("https://{slug}.app.example/first-sign-in?token={token}").is_ok());
        assert!(check_url_form("https://app.example/first-sign-in").is_err());
        assert!(check_url_form("https://{tenant}.app.example/?t={token}").is_err());
        let link = invitation_link(
            "https://{slug}.app.example/first-sign-in?token={token}",
            &Slug::parse("acme").unwrap(),
            &SecretString::new("abc".into()),
        );
        assert_eq!(
            link.expose(),
            "https://acme.app.example/first-sign-in?token=abc"
        );
    }

    #[test]
    fn a_message_id_is_the_delivery_id_at_the_senders_domain() {
        assert_eq!(
            message_id("msg_1", "tenantry <noreply@ops.example>"),
            "msg_1@ops.example"
        );
        assert_eq!(
            message_id("msg_1", "noreply@ops.example"),
            "msg_1@ops.example"
        );
    }
}
