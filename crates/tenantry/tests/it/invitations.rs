//! The first admin's invitation e-mail through the real binary, to a real SMTP server of the test's own
//! (aiosmtpd): exactly one e-mail per tenant provisioned over the CLI, the API and the console, whose link carries
//! the token the tenant database holds the hash of, after which the secret store no longer holds the link; an
//! SMTP server down for a while loses nothing; a crash after the send sends again with the same Message-ID; a
//! resend invalidates the old link; bad settings are refused and change nothing.

use crate::harness::{eventually, Engine, Fleet, Mail, MailServer};
use serde_json::Value;
use sha2::Digest;
use sqlx::Connection;

const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8";
const PASSWORD: &str = "correct horse battery staple";
const LINK_FORM: &str = "https://{slug}.app.example/first-sign-in?token={token}";

/// A fleet whose invitations go to `mail` (retries quick, so a test waits little).
fn with_smtp(fleet: &mut Fleet, mail: &MailServer) {
    fleet.set_env("TENANTRY_SMTP_URL", &mail.url());
    fleet.set_env("TENANTRY_SMTP_FROM", "Tenantry <noreply@ops.example>");
    fleet.set_env("TENANTRY_INVITATION_URL", LINK_FORM);
    fleet.set_env("TENANTRY_NOTIFY_RETRY_BASE_MS", "50");
}

/// The token in an e-mail's first-sign-in link for `slug`.
fn token_in(mail: &Mail, slug: &str) -> String {
    let prefix = format!("https://{slug}.app.example/first-sign-in?token=");
    let start = mail
        .text
        .find(&prefix)
        .unwrap_or_else(|| panic!("no link for {slug} in {mail:?}"))
        + prefix.len();
    let token: String = mail.text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    assert!(token.len() >= 32, "{token:?}");
    // The HTML part carries the same link.
    assert!(mail.html.contains(&token), "{}", mail.html);
    token
}

/// The invitation token hash the tenant's own database holds for its admin.
async fn stored_token_hash(fleet: &Fleet, slug: &str, email: &str) -> String {
    let path = fleet.sqlite_file(slug);
    let mut tenant =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", path.display()))
            .await
            .expect("the tenant database");
    sqlx::query_scalar("SELECT invitation_token_hash FROM users WHERE email = $1")
        .bind(email)
        .fetch_one(&mut tenant)
        .await
        .expect("the admin row")
}

fn sha256_hex(value: &str) -> String {
    sha2::Sha256::digest(value.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Checks one received invitation: to the admin, with a Message-ID at the sender's domain, a link whose token is
/// the one the tenant database holds the hash of, and the link gone from the secret store. Returns the token.
async fn check_invitation(fleet: &Fleet, mail: &Mail, slug: &str, email: &str) -> String {
    assert_eq!(mail.to, email, "{mail:?}");
    assert_eq!(mail.from, "noreply@ops.example");
    assert!(
        mail.message_id.starts_with("msg_") && mail.message_id.ends_with("@ops.example"),
        "{mail:?}"
    );
    assert!(
        mail.raw.contains("multipart/alternative"),
        "plain text and HTML"
    );
    let token = token_in(mail, slug);
    assert_eq!(
        stored_token_hash(fleet, slug, email).await,
        sha256_hex(&token)
    );
    let invitation_secret = format!("tenant-invite-{slug}");
    eventually(
        10,
        || format!("{invitation_secret} outlived its e-mail"),
        || async {
            fleet
                .secret(&invitation_secret)
                .await
                .is_none()
                .then_some(())
        },
    )
    .await;
    token
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_emails_one_invitation_whose_token_the_tenant_holds_and_a_resend_replaces_it() {
    let mut fleet = Fleet::new(Engine::Sqlite).await;
    let mail = MailServer::start().await;
    with_smtp(&mut fleet, &mail);
    let run = fleet.provision("mail-cli", &[]).await;
    run.assert_ok();
    // The e-mail is the only place the link goes: the command says where it went, not what it was.
    assert!(
        run.stdout
            .contains("invitation e-mailed to admin@mail-cli.example"),
        "{run:?}"
    );
    assert!(!run.stdout.contains("first-sign-in?token="), "{run:?}");
    assert!(
        !run.stdout.contains("one_time_password"),
        "no one-time password: {run:?}"
    );
    let got = mail.messages();
    assert_eq!(got.len(), 1, "exactly one e-mail: {got:?}");
    let first_token = check_invitation(&fleet, &got[0], "mail-cli", "admin@mail-cli.example").await;
    assert_eq!(got[0].subject, "You are invited to Tenant mail-cli");
    // Where people look: the tenant's invitation, and the outbox.
    let shown = fleet.json(&["notifications", "list"]).await;
    let email = shown
        .as_array()
        .unwrap()
        .iter()
        .find(|delivery| delivery["channel"] == "email")
        .cloned()
        .expect("the invitation is in the outbox");
    assert_eq!(email["status"], "sent");
    assert_eq!(email["recipient"], "admin@mail-cli.example");
    assert_eq!(
        format!("{}@ops.example", email["id"].as_str().unwrap()),
        got[0].message_id
    );
    assert!(
        !email.to_string().contains(&first_token),
        "no token in the outbox: {email}"
    );

    // A fresh link: a second e-mail, a new token, the old one no longer in the tenant database.
    let resent = fleet
        .json(&["invitations", "resend", "--slug", "mail-cli"])
        .await;
    assert_eq!(resent["resent"]["emailed"], true, "{resent}");
    assert_eq!(resent["invitation"]["status"], "sent", "{resent}");
    let got = mail.messages();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_ne!(got[0].message_id, got[1].message_id);
    let second_token =
        check_invitation(&fleet, &got[1], "mail-cli", "admin@mail-cli.example").await;
    assert_ne!(first_token, second_token);
    assert!(fleet
        .audit_types("mail-cli")
        .await
        .contains(&"INVITATION_RESENT".to_owned()));
    fleet.assert_doctor_clean().await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_and_the_console_each_send_exactly_one_invitation() {
    let mut fleet = Fleet::new(Engine::Sqlite).await;
    let mail = MailServer::start().await;
    with_smtp(&mut fleet, &mail);
    fleet
        .run_with_stdin(
            &[
                "users",
                "add",
                "--email",
                "ops@example.com",
                "--role",
                "PLATFORM_ADMIN",
                "--password-stdin",
            ],
            PASSWORD,
        )
        .await
        .assert_ok();
    let token = fleet
        .run(&["users", "token", "--email", "ops@example.com"])
        .await;
    token.assert_ok();
    let token = token.stdout.trim().to_owned();
    let server = fleet.serve(&[]).await;

    // Over the API.
    let accepted = server
        .post("/platform/tenants", &token)
        .json(&serde_json::json!({
            "slug": "mail-api",
            "display_name": "Mail Api",
            "admin_email": "first@mail-api.example",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let got = eventually(
        30,
        || server.log(),
        || async {
            let got = mail.messages();
            (!got.is_empty()).then_some(got)
        },
    )
    .await;
    check_invitation(&fleet, &got[0], "mail-api", "first@mail-api.example").await;
    let invitation: Value = server
        .get("/platform/tenants/mail-api/invitation", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(invitation["status"], "sent", "{invitation}");
    assert_eq!(invitation["recipient"], "first@mail-api.example");

    // Over the console: signed in, the wizard's form.
    let signed_in = server
        .http
        .post(server.url("/platform/login"))
        .header("accept", BROWSER_ACCEPT)
        .form(&[
            ("email", "ops@example.com"),
            ("password", PASSWORD),
            ("next", "/platform/tenants/new"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = |path: &str| {
        server
            .http
            .get(server.url(path))
            .header("accept", BROWSER_ACCEPT)
            .header("cookie", &cookie)
            .send()
    };
    let wizard = page("/platform/tenants/new")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = wizard
        .split_once("<meta name=\"csrf-token\" content=\"")
        .unwrap()
        .1
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let provisioned = server
        .http
        .post(server.url("/platform/tenants/new"))
        .header("accept", BROWSER_ACCEPT)
        .header("cookie", &cookie)
        .form(&[
            ("csrf_token", csrf.as_str()),
            ("idempotency_key", "mail-console-1"),
            ("step", "1"),
            ("action", "provision"),
            ("slug", "mail-console"),
            ("display_name", "Mail Console"),
            ("admin_email", "first@mail-console.example"),
            ("plan", "starter"),
            ("region", "local"),
            ("server", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(
        provisioned.status(),
        303,
        "{}",
        provisioned.text().await.unwrap()
    );
    let got = eventually(
        30,
        || server.log(),
        || async {
            let got = mail.messages();
            (got.len() >= 2).then_some(got)
        },
    )
    .await;
    check_invitation(
        &fleet,
        &got[1],
        "mail-console",
        "first@mail-console.example",
    )
    .await;
    // The tenant page shows where the invitation stands, and offers a fresh one.
    let tenant_page = page("/platform/tenants/mail-console")
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(tenant_page.contains("Invitation"), "{tenant_page}");
    assert!(tenant_page.contains("first@mail-console.example"));
    assert!(tenant_page.contains("Send a fresh invitation"));
    assert!(!tenant_page.contains("token="), "never the link");
    // Nothing more arrives: exactly one each.
    assert_eq!(mail.messages().len(), 2);
    server.terminate().await;
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_server_down_for_a_while_loses_nothing() {
    let mut fleet = Fleet::new(Engine::Sqlite).await;
    let mut mail = MailServer::start().await;
    with_smtp(&mut fleet, &mail);
    fleet.set_env("TENANTRY_NOTIFY_MAX_ATTEMPTS", "50");
    mail.stop().await;
    let slugs = ["down-one", "down-two", "down-three"];
    for slug in slugs {
        let run = fleet.provision(slug, &[]).await;
        run.assert_ok();
        assert!(run.stdout.contains("invitation to admin@"), "{run:?}");
    }
    let pending = fleet
        .json(&["notifications", "list", "--status", "pending"])
        .await;
    assert_eq!(pending.as_array().unwrap().len(), 3, "{pending}");
    assert!(
        pending[0]["last_error"].as_str().unwrap().contains("SMTP"),
        "{pending}"
    );
    // A worker keeps retrying; once the server is back, every invitation arrives, once.
    let mut worker = fleet.spawn(&["worker", "--workers", "1"], &[]);
    mail.resume().await;
    let got = eventually(
        30,
        || worker.log(),
        || async {
            let got = mail.messages();
            (got.len() >= 3).then_some(got)
        },
    )
    .await;
    for slug in slugs {
        let theirs: Vec<&Mail> = got
            .iter()
            .filter(|mail| mail.to == format!("admin@{slug}.example"))
            .collect();
        assert_eq!(theirs.len(), 1, "{slug}: {got:?}");
        check_invitation(&fleet, theirs[0], slug, &format!("admin@{slug}.example")).await;
    }
    worker.signal("TERM");
    assert!(worker.wait(30).await.success());
    assert_eq!(mail.messages().len(), 3);
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_sending_sends_again_with_the_same_message_id() {
    let mut fleet = Fleet::new(Engine::Sqlite).await;
    let mail = MailServer::start().await;
    with_smtp(&mut fleet, &mail);
    let crashed = fleet
        .provision(
            "mail-crash",
            &[("TENANTRY_FAILPOINTS", "notification.after_send=exit")],
        )
        .await;
    assert_eq!(crashed.status, 137, "{crashed:?}");
    assert_eq!(mail.messages().len(), 1);
    // Not recorded, so the link is still there for the second send.
    assert!(fleet.secret("tenant-invite-mail-crash").await.is_some());
    let mut worker = fleet.spawn(&["worker", "--workers", "1"], &[]);
    let got = eventually(
        30,
        || worker.log(),
        || async {
            let got = mail.messages();
            (got.len() == 2).then_some(got)
        },
    )
    .await;
    assert_eq!(got[0].message_id, got[1].message_id, "the same Message-ID");
    assert_eq!(
        token_in(&got[0], "mail-crash"),
        token_in(&got[1], "mail-crash")
    );
    check_invitation(&fleet, &got[1], "mail-crash", "admin@mail-crash.example").await;
    worker.signal("TERM");
    assert!(worker.wait(30).await.success());
    fleet.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_smtp_the_link_waits_and_bad_mail_settings_are_refused_changing_nothing() {
    let mut fleet = Fleet::new(Engine::Sqlite).await;
    fleet.set_env("TENANTRY_INVITATION_URL", LINK_FORM);
    // No SMTP server: the CLI that ran the job shows the link (it goes nowhere else), and it waits in the store.
    let run = fleet.provision("no-smtp", &[]).await;
    run.assert_ok();
    assert!(
        run.stdout
            .contains("https://no-smtp.app.example/first-sign-in?token="),
        "{run:?}"
    );
    assert!(run.stdout.contains("no smtp_url is configured"), "{run:?}");
    let waiting = fleet
        .secret("tenant-invite-no-smtp")
        .await
        .expect("the link waits");
    let token = waiting.rsplit_once("token=").unwrap().1;
    assert_eq!(
        stored_token_hash(&fleet, "no-smtp", "admin@no-smtp.example").await,
        sha256_hex(token)
    );
    let shown = fleet.json(&["tenants", "show", "no-smtp"]).await;
    assert_eq!(shown["invitation"]["status"], "waiting_for_smtp", "{shown}");

    let audit_before = fleet
        .json(&["audit", "list"])
        .await
        .as_array()
        .unwrap()
        .len();
    let template = fleet.data_path("bad-template");
    crate::harness::write_file(&template.join("subject.txt"), "Welcome to {{ display_name");
    crate::harness::write_file(&template.join("body.txt"), "{{ link }}");
    crate::harness::write_file(&template.join("body.html"), "{{ link }}");
    let misspelt = fleet.data_path("misspelt-template");
    crate::harness::write_file(&misspelt.join("subject.txt"), "Welcome");
    crate::harness::write_file(&misspelt.join("body.txt"), "{{ link }} {{ dispaly_name }}");
    crate::harness::write_file(&misspelt.join("body.html"), "{{ link }}");
    let template = template.display().to_string();
    let misspelt = misspelt.display().to_string();
    for (env, says) in [
        (
            ("TENANTRY_INVITATION_TEMPLATE", template.as_str()),
            "subject.txt",
        ),
        (
            ("TENANTRY_INVITATION_TEMPLATE", misspelt.as_str()),
            "body.txt",
        ),
        (
            (
                "TENANTRY_INVITATION_URL",
                "https://app.example/first-sign-in",
            ),
            "{token}",
        ),
        (
            ("TENANTRY_SMTP_URL", "smtp://mailer:hunter2@127.0.0.1:25"),
            "never a password",
        ),
        (("TENANTRY_SMTP_URL", "http://127.0.0.1:25"), "smtp://"),
        (("TENANTRY_SMTP_FROM", "not an address"), "smtp_from"),
    ] {
        let run = fleet.provision("bad-mail", &[env]).await;
        assert_eq!(
            run.error_code().as_deref(),
            Some("E_INVALID_INPUT"),
            "{env:?}: {run:?}"
        );
        assert!(run.stderr.contains(says), "{env:?}: {run:?}");
        assert!(!run.stderr.contains("hunter2"), "{run:?}");
    }
    // `secrets set` takes only the operator's secrets, and never from the command line.
    let refused = fleet
        .run_with_stdin(&["secrets", "set", "tenant-db-no-smtp"], "x\n")
        .await;
    assert_eq!(
        refused.error_code().as_deref(),
        Some("E_INVALID_INPUT"),
        "{refused:?}"
    );
    let empty = fleet
        .run_with_stdin(&["secrets", "set", "smtp-password"], "")
        .await;
    assert_eq!(
        empty.error_code().as_deref(),
        Some("E_INVALID_INPUT"),
        "{empty:?}"
    );
    assert!(fleet
        .tenants()
        .await
        .iter()
        .all(|tenant| tenant["slug"] != "bad-mail"));
    assert_eq!(
        fleet
            .json(&["audit", "list"])
            .await
            .as_array()
            .unwrap()
            .len(),
        audit_before
    );
    fleet
        .run_with_stdin(&["secrets", "set", "smtp-password"], "s3cret-smtp\n")
        .await
        .assert_ok();
    assert_eq!(
        fleet.secret("smtp-password").await.as_deref(),
        Some("s3cret-smtp")
    );
    fleet.cleanup().await;
}
