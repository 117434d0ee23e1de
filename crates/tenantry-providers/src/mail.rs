//! E-mail over SMTP: the server an `smtp_url` names, and one message (plain text and HTML) sent with the
//! Message-ID its caller chose, so a message sent twice after a crash is recognisably the same message.

use crate::credentials::SecretString;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// How long one SMTP conversation may take before the attempt counts as failed.
const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// `smtp://host:port`: no TLS (a relay on the same host or network).
    Plain,
    /// `smtp://host:port?tls=starttls`: upgraded with STARTTLS, which must succeed.
    StartTls,
    /// `smtps://host:port`: TLS from the first byte.
    Tls,
}

/// An SMTP server as `smtp_url` names it. The password is never part of it: it lives in the secret store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpEndpoint {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// The user name to log in with; the password comes from the secret store.
    pub user: Option<String>,
}

impl SmtpEndpoint {
    /// Parses `smtp://[user@]host[:port][?tls=starttls]` or `smtps://[user@]host[:port]`. A password in the URL
    /// is refused: a URL ends up in process lists, shell histories and files.
    pub fn parse(raw: &str) -> Result<SmtpEndpoint, String> {
        let url =
            url::Url::parse(raw).map_err(|error| format!("smtp_url is not a URL ({error})"))?;
        if url.password().is_some() {
            return Err(
                "smtp_url may name a user but never a password: set it with `tenantry secrets set smtp-password` \
                 (read from standard input)"
                    .into(),
            );
        }
        let mut security = match url.scheme() {
            "smtp" => SmtpSecurity::Plain,
            "smtps" => SmtpSecurity::Tls,
            other => {
                return Err(format!(
                    "smtp_url must start with smtp:// or smtps://, not {other}://"
                ))
            }
        };
        for (key, value) in url.query_pairs() {
            match (key.as_ref(), value.as_ref(), security) {
                ("tls", "starttls", SmtpSecurity::Plain) => security = SmtpSecurity::StartTls,
                ("tls", "none", SmtpSecurity::Plain) => {}
                _ => {
                    return Err(format!(
                        "smtp_url: unknown option {key}={value} (the one option is tls=starttls on smtp://)"
                    ))
                }
            }
        }
        let host = url
            .host_str()
            .filter(|host| !host.is_empty())
            .ok_or("smtp_url names no host")?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url.port().unwrap_or(match security {
            SmtpSecurity::Tls => 465,
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::Plain => 25,
        });
        let user = (!url.username().is_empty()).then(|| {
            percent_encoding::percent_decode_str(url.username())
                .decode_utf8_lossy()
                .into_owned()
        });
        Ok(SmtpEndpoint {
            host,
            port,
            security,
            user,
        })
    }
}

/// One message to one recipient.
#[derive(Debug, Clone)]
pub struct OutgoingMail<'a> {
    /// The `Message-ID` without angle brackets (`id@domain`), the same on every attempt.
    pub message_id: &'a str,
    pub from: &'a str,
    pub to: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    pub html: &'a str,
}

/// Checks that `address` is a mailbox (`name <a@b>` or `a@b`), as `smtp_from` must be.
pub fn check_mailbox(address: &str) -> Result<(), String> {
    address
        .parse::<Mailbox>()
        .map(|_| ())
        .map_err(|error| format!("{address:?} is not an e-mail address ({error})"))
}

/// Sends one message. The error is the server's or the connection's words, never the password.
pub async fn send(
    endpoint: &SmtpEndpoint,
    password: Option<&SecretString>,
    mail: &OutgoingMail<'_>,
) -> Result<(), String> {
    let message = Message::builder()
        .message_id(Some(format!("<{}>", mail.message_id)))
        .from(
            mail.from
                .parse()
                .map_err(|error| format!("from: {error}"))?,
        )
        .to(mail.to.parse().map_err(|error| format!("to: {error}"))?)
        .subject(mail.subject)
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(mail.text.to_owned()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(mail.html.to_owned()),
                ),
        )
        .map_err(|error| format!("the message could not be built: {error}"))?;
    let tls = match endpoint.security {
        SmtpSecurity::Plain => Tls::None,
        SmtpSecurity::StartTls | SmtpSecurity::Tls => {
            let parameters = TlsParameters::new(endpoint.host.clone())
                .map_err(|error| format!("TLS for {}: {error}", endpoint.host))?;
            if endpoint.security == SmtpSecurity::Tls {
                Tls::Wrapper(parameters)
            } else {
                Tls::Required(parameters)
            }
        }
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&endpoint.host)
        .port(endpoint.port)
        .tls(tls)
        .timeout(Some(SMTP_TIMEOUT));
    if let Some(user) = &endpoint.user {
        let password = password.ok_or_else(|| {
            format!(
                "smtp_url names the user {user:?} but the secret store holds no smtp-password \
                 (`tenantry secrets set smtp-password`)"
            )
        })?;
        builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
    }
    builder
        .build()
        .send(message)
        .await
        .map(|_| ())
        .map_err(|error| {
            format!(
                "the SMTP server {}:{} did not take the message: {error}",
                endpoint.host, endpoint.port
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_name_host_port_security_and_user() {
        for (raw, host, port, security, user) in [
            (
                "smtp://127.0.0.1:2525",
                "127.0.0.1",
                2525,
                SmtpSecurity::Plain,
                None,
            ),
            (
                "smtp://mailer@mail.example:587?tls=starttls",
                "mail.example",
                587,
                SmtpSecurity::StartTls,
                Some("mailer"),
            ),
            (
                "smtps://mail.example",
                "mail.example",
                465,
                SmtpSecurity::Tls,
                None,
            ),
            ("smtp://[::1]:25", "::1", 25, SmtpSecurity::Plain, None),
        ] {
            let endpoint = SmtpEndpoint::parse(raw).unwrap();
            assert_eq!(endpoint.host, host, "{raw}");
            assert_eq!(endpoint.port, port, "{raw}");
            assert_eq!(endpoint.security, security, "{raw}");
            assert_eq!(endpoint.user.as_deref(), user, "{raw}");
        }
    }

    #[test]
    fn a_password_unknown_option_or_other_scheme_is_refused() {
        for raw in [
            "smtp://user:hunter2@mail.example",
            "smtp://mail.example?tls=maybe",
            "smtps://mail.example?tls=starttls",
            "https://mail.example",
            "not a url",
        ] {
            let error = SmtpEndpoint::parse(raw).unwrap_err();
            assert!(!error.contains("hunter2"), "{error}");
        }
    }
}
