//! The names of templates, pool databases and build databases, and parsing them back.

pub(super) fn template_name(hash: &str) -> String {
    format!("tenantry_template_{hash}")
}

pub(super) fn template_build_name(hash: &str) -> String {
    format!("tenantry_build_{hash}")
}

pub(super) fn pool_name(hash: &str, number: u64) -> String {
    format!("tenantry_pool_{hash}_{number}")
}

pub(super) fn pool_build_name(hash: &str, number: u64) -> String {
    format!("tenantry_build_{hash}_{number}")
}

/// `LIKE` pattern of the pool databases of one schema version (the hash is hex, so it needs no escaping).
pub(super) fn pool_pattern(hash: &str) -> String {
    format!("tenantry\\_pool\\_{hash}\\_%")
}

fn is_schema_hash(text: &str) -> bool {
    text.len() == 16
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// What a `tenantry_*` database or role name stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FastPathName {
    Template {
        hash: String,
    },
    Pool {
        hash: String,
        number: u64,
    },
    /// A template or pool database still being built (or left half-built by a crash).
    Build {
        hash: String,
        number: Option<u64>,
    },
}

fn parse_hash_and_number(rest: &str) -> Option<(String, Option<u64>)> {
    let (hash, number) = match rest.split_once('_') {
        Some((hash, number)) => (hash, Some(number.parse::<u64>().ok()?)),
        None => (rest, None),
    };
    is_schema_hash(hash).then(|| (hash.to_owned(), number))
}

pub(super) fn parse_name(name: &str) -> Option<FastPathName> {
    if let Some(rest) = name.strip_prefix("tenantry_template_") {
        return match parse_hash_and_number(rest)? {
            (hash, None) => Some(FastPathName::Template { hash }),
            _ => None,
        };
    }
    if let Some(rest) = name.strip_prefix("tenantry_pool_") {
        return match parse_hash_and_number(rest)? {
            (hash, Some(number)) => Some(FastPathName::Pool { hash, number }),
            _ => None,
        };
    }
    let (hash, number) = parse_hash_and_number(name.strip_prefix("tenantry_build_")?)?;
    Some(FastPathName::Build { hash, number })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engines::quote_identifier;

    const CURRENT: &str = "0123456789abcdef";

    #[test]
    fn names_parse_back() {
        assert_eq!(
            parse_name(&template_name(CURRENT)),
            Some(FastPathName::Template {
                hash: CURRENT.into()
            })
        );
        assert_eq!(
            parse_name(&pool_name(CURRENT, 12)),
            Some(FastPathName::Pool {
                hash: CURRENT.into(),
                number: 12
            })
        );
        assert_eq!(
            parse_name(&pool_build_name(CURRENT, 3)),
            Some(FastPathName::Build {
                hash: CURRENT.into(),
                number: Some(3)
            })
        );
        assert_eq!(parse_name("tenantry_pool_nothex0123456789_1"), None);
        assert_eq!(parse_name(&format!("tenantry_pool_{CURRENT}")), None);
        assert_eq!(parse_name("tenant_acme"), None);
        for name in [template_name(CURRENT), pool_name(CURRENT, u64::MAX)] {
            assert!(
                quote_identifier(&name).is_ok(),
                "{name} is a valid identifier"
            );
        }
    }
}
