//! What a provisioning request asks for, validated: display name, admin email, server name and the whole spec,
//! with the one parser every entry point (CLI, API, console, bench) turns raw fields into a spec with.

use crate::{Error, Slug, TenantProfile};
use std::fmt;

/// A display name of 3 to 100 characters without control characters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: &str) -> Result<DisplayName, Error> {
        let trimmed = raw.trim();
        let length = trimmed.chars().count();
        if !(3..=100).contains(&length) {
            return Err(Error::invalid_input(format!(
                "display name must have 3 to 100 characters; it has {length}"
            )));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(Error::invalid_input(
                "display name must not contain control characters",
            ));
        }
        Ok(DisplayName(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DisplayName {
    type Error = Error;
    fn try_from(raw: String) -> Result<Self, Error> {
        DisplayName::parse(&raw)
    }
}

impl From<DisplayName> for String {
    fn from(name: DisplayName) -> String {
        name.0
    }
}

/// The first admin's email address: one `@`, a non-empty local part, a dotted domain, no spaces, at most 254 bytes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AdminEmail(String);

impl AdminEmail {
    pub fn parse(raw: &str) -> Result<AdminEmail, Error> {
        let invalid =
            || Error::invalid_input(format!("admin email {raw:?} is not a valid address"));
        if raw.len() > 254 || raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = raw.split_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..")
            && domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if local.is_empty() || local.len() > 64 || local.contains('@') || !domain_ok {
            return Err(invalid());
        }
        Ok(AdminEmail(raw.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AdminEmail {
    type Error = Error;
    fn try_from(raw: String) -> Result<Self, Error> {
        AdminEmail::parse(&raw)
    }
}

impl From<AdminEmail> for String {
    fn from(email: AdminEmail) -> String {
        email.0
    }
}

/// A fleet member's name: same alphabet as a slug, 1 to 63 characters, so it is safe in paths and logs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServerName(String);

impl ServerName {
    pub fn parse(raw: &str) -> Result<ServerName, Error> {
        let valid = (1..=63).contains(&raw.len())
            && raw.starts_with(|c: char| c.is_ascii_lowercase())
            && raw
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(Error::invalid_input(format!(
                "server name {raw:?} is not valid: use 1 to 63 lowercase letters, digits and hyphens, starting with a letter"
            )));
        }
        Ok(ServerName(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl TryFrom<String> for ServerName {
    type Error = Error;
    fn try_from(raw: String) -> Result<Self, Error> {
        ServerName::parse(&raw)
    }
}

impl From<ServerName> for String {
    fn from(name: ServerName) -> String {
        name.0
    }
}

/// A validated request to provision one tenant. It is stored as the job's parameters; it holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    pub slug: Slug,
    pub display_name: DisplayName,
    pub admin_email: AdminEmail,
    pub plan: String,
    pub region: String,
    /// An explicit server; `None` asks for auto-placement.
    pub server: Option<ServerName>,
    #[serde(default)]
    pub dry_run: bool,
    /// The monthly budget the requester asks for (whole currency units). At or above the approval threshold,
    /// the job waits for a PLATFORM_ADMIN. `None`: the plan's monthly estimate stands in for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<u64>,
    /// A restore: the backup whose data the tenant gets instead of an empty migrated schema (job kind `restore`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_from: Option<String>,
    /// What the wizard's later steps asked for (description, contact, resource tier, isolation, data sources,
    /// modules, security); the default for a request that named none of it, and for jobs recorded before it.
    #[serde(default, skip_serializing_if = "TenantProfile::is_default")]
    pub profile: TenantProfile,
}

/// A provisioning request as it arrives (CLI flags, a JSON body, a form, a benchmark's names), before validation.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawTenantSpec<'a> {
    pub slug: &'a str,
    pub display_name: &'a str,
    pub admin_email: &'a str,
    /// `None`: the installation's default plan.
    pub plan: Option<&'a str>,
    /// `None`: the installation's default region.
    pub region: Option<&'a str>,
    /// `None`: auto-placement.
    pub server: Option<&'a str>,
    pub budget: Option<u64>,
    pub dry_run: bool,
}

/// What a request that names no plan or region gets: the installation's configured defaults.
#[derive(Debug, Clone, Copy)]
pub struct SpecDefaults<'a> {
    pub plan: &'a str,
    pub region: &'a str,
}

impl TenantSpec {
    /// Validates each field in order (slug, display name, admin email, server, budget) and returns the first
    /// error, with its code (`E_INVALID_SLUG`, `E_INVALID_INPUT`). Whether the plan and region exist is the
    /// settings' business, checked when the job is submitted.
    pub fn parse(raw: RawTenantSpec<'_>, defaults: SpecDefaults<'_>) -> Result<TenantSpec, Error> {
        Ok(TenantSpec {
            slug: Slug::parse(raw.slug)?,
            display_name: DisplayName::parse(raw.display_name)?,
            admin_email: AdminEmail::parse(raw.admin_email)?,
            plan: raw.plan.unwrap_or(defaults.plan).to_owned(),
            region: raw.region.unwrap_or(defaults.region).to_owned(),
            server: raw.server.map(ServerName::parse).transpose()?,
            dry_run: raw.dry_run,
            budget: crate::checked_budget(raw.budget)?,
            restore_from: None,
            profile: TenantProfile::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    const DEFAULTS: SpecDefaults<'static> = SpecDefaults {
        plan: "starter",
        region: "local",
    };

    fn raw() -> RawTenantSpec<'static> {
        RawTenantSpec {
            slug: "acme",
            display_name: "Acme Health",
            admin_email: "Admin@Acme.example",
            ..RawTenantSpec::default()
        }
    }

    #[test]
    fn spec_takes_the_defaults_for_what_is_not_given() {
        let spec = TenantSpec::parse(raw(), DEFAULTS).unwrap();
        assert_eq!(spec.slug.as_str(), "acme");
        assert_eq!(spec.admin_email.as_str(), "admin@acme.example");
        assert_eq!(
            (spec.plan.as_str(), spec.region.as_str()),
            ("starter", "local")
        );
        assert_eq!(
            (spec.server, spec.budget, spec.dry_run),
            (None, None, false)
        );
        let spec = TenantSpec::parse(
            RawTenantSpec {
                plan: Some("growth"),
                region: Some("eu"),
                server: Some("pg-1"),
                budget: Some(40),
                dry_run: true,
                ..raw()
            },
            DEFAULTS,
        )
        .unwrap();
        assert_eq!((spec.plan.as_str(), spec.region.as_str()), ("growth", "eu"));
        assert_eq!(spec.server.as_ref().map(ServerName::as_str), Some("pg-1"));
        assert_eq!((spec.budget, spec.dry_run), (Some(40), true));
    }

    #[test]
    fn spec_reports_the_first_bad_field_with_its_code() {
        let error = TenantSpec::parse(
            RawTenantSpec {
                slug: "A",
                display_name: "x",
                ..raw()
            },
            DEFAULTS,
        )
        .unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidSlug);
        let error = TenantSpec::parse(
            RawTenantSpec {
                display_name: "x",
                admin_email: "nope",
                ..raw()
            },
            DEFAULTS,
        )
        .unwrap_err();
        assert_eq!(
            (error.code, error.message.as_str()),
            (
                ErrorCode::InvalidInput,
                "display name must have 3 to 100 characters; it has 1"
            )
        );
        let error = TenantSpec::parse(
            RawTenantSpec {
                server: Some("Bad Server"),
                budget: Some(u64::MAX),
                ..raw()
            },
            DEFAULTS,
        )
        .unwrap_err();
        assert!(
            error.message.starts_with("server name"),
            "{}",
            error.message
        );
        let error = TenantSpec::parse(
            RawTenantSpec {
                budget: Some(u64::MAX),
                ..raw()
            },
            DEFAULTS,
        )
        .unwrap_err();
        assert!(error.message.starts_with("budget"), "{}", error.message);
    }

    #[test]
    fn display_name_bounds() {
        assert!(DisplayName::parse("Acme Health").is_ok());
        assert_eq!(
            DisplayName::parse("ab").unwrap_err().code,
            ErrorCode::InvalidInput
        );
        assert!(DisplayName::parse(&"x".repeat(101)).is_err());
        assert!(DisplayName::parse("bad\u{0}name").is_err());
    }

    #[test]
    fn email_shapes() {
        assert!(AdminEmail::parse("admin@acme.example").is_ok());
        for bad in [
            "",
            "admin",
            "admin@",
            "@acme.example",
            "a@b",
            "a b@c.d",
            "a@b..c",
            "a@@b.c",
        ] {
            assert!(AdminEmail::parse(bad).is_err(), "{bad}");
        }
    }
}
