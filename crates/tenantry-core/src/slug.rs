//! The tenant slug: `^[a-z][a-z0-9-]{2,39}$`, and the identifiers derived from it.

use crate::{Error, ErrorCode};
use std::fmt;

/// A tenant slug that passed the slug rule. Identifiers built from it are safe to quote as SQL identifiers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Slug(String);

impl Slug {
    pub fn parse(raw: &str) -> Result<Slug, Error> {
        let invalid = |why: &str| {
            Error::new(
                ErrorCode::InvalidSlug,
                format!("slug {raw:?} is not valid: {why} (rule: ^[a-z][a-z0-9-]{{2,39}}$)"),
            )
        };
        let mut chars = raw.chars();
        match chars.next() {
            None => return Err(invalid("it is empty")),
            Some(first) if !first.is_ascii_lowercase() => {
                return Err(invalid("it must start with a lowercase letter"))
            }
            Some(_) => {}
        }
        if let Some(bad) = raw
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(invalid(&format!(
                "{bad:?} is not allowed; use lowercase letters, digits and hyphens"
            )));
        }
        let length = raw.len();
        if !(3..=40).contains(&length) {
            return Err(invalid(&format!(
                "it has {length} characters; 3 to 40 are allowed"
            )));
        }
        Ok(Slug(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `tenant_<slug with - replaced by _>`: the name of the tenant's database, role and SQLite file stem.
    pub fn resource_name(&self) -> String {
        format!("tenant_{}", self.0.replace('-', "_"))
    }

    /// The name of the secret that holds the tenant's connection URL.
    pub fn secret_name(&self) -> String {
        format!("tenant-db-{}", self.0)
    }

    /// The name of the secret that holds the first admin's invitation token until the email is sent.
    pub fn invitation_secret_name(&self) -> String {
        format!("tenant-invite-{}", self.0)
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Slug {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Slug::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_shape() {
        for good in ["acme", "a-1", "abc", &format!("a{}", "b".repeat(39))] {
            assert!(Slug::parse(good).is_ok(), "{good} should be valid");
        }
    }

    #[test]
    fn rejects_everything_else_with_invalid_slug() {
        let too_long = "a".repeat(41);
        for bad in [
            "",
            "ab",
            "Acme",
            "1acme",
            "a_b",
            "a;drop database x",
            "a'b",
            "a\"b",
            "añb",
            "-abc",
            &too_long,
        ] {
            let error = Slug::parse(bad).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidSlug, "{bad}");
        }
    }

    #[test]
    fn derives_resource_names() {
        let slug = Slug::parse("acme-health").unwrap();
        assert_eq!(slug.resource_name(), "tenant_acme_health");
        assert_eq!(slug.secret_name(), "tenant-db-acme-health");
    }
}
