//! Credentials tenantry generates: database passwords, one-time admin passwords and invitation tokens, and their
//! hashes. Plain values live only in memory and in the secret store.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// A secret string. Its `Debug` and `Display` print a placeholder, so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: String) -> SecretString {
        SecretString(value)
    }

    /// The plain value. Call only where the value must leave the process (a connection, the secret store, the
    /// one place it is shown).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("SecretString(***)")
    }
}

impl std::fmt::Display for SecretString {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("***")
    }
}

/// `n_bytes` random bytes from the OS generator, URL-safe base64 without padding.
pub fn random_token(n_bytes: usize) -> SecretString {
    let mut bytes = vec![0u8; n_bytes];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    SecretString(URL_SAFE_NO_PAD.encode(bytes))
}

/// A tenant database password: 32 random bytes, URL-safe, so it can sit in a connection URL unescaped.
pub fn generate_database_password() -> SecretString {
    random_token(32)
}

/// The argon2id hash (PHC string) of a password, for the tenant's own users table.
pub fn hash_password(password: &SecretString) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2::Argon2::default()
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| format!("hashing failed: {error}"))
}

/// The fewest characters a generated password given to [`hash_generated_password`] may have: 22 characters of
/// URL-safe base64 carry 132 random bits.
const MIN_GENERATED_PASSWORD_CHARS: usize = 22;

/// The argon2id hash (PHC string) of a password tenantry generated at random, such as the first admin's
/// one-time password (18 random bytes).
///
/// A memory-hard cost protects passwords people choose, which can be guessed. Nobody guesses one of 2^128 random
/// values whatever the cost, which is also why an invitation token is kept as a plain SHA-256. So this is argon2id
/// at a light cost (4 MiB, one pass: about 1 ms, where the default takes about 22 ms on every provisioning). It is
/// still a PHC string that any argon2 verifier checks, since the parameters are in it. The admin must replace the
/// password at first login, and the tenant's application hashes the chosen one at its own cost.
pub fn hash_generated_password(password: &SecretString) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    if password.expose().len() < MIN_GENERATED_PASSWORD_CHARS {
        return Err("a light hash is only for long random passwords".into());
    }
    let params = argon2::Params::new(4 * 1024, 1, 1, None)
        .map_err(|error| format!("hashing failed: {error}"))?;
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| format!("hashing failed: {error}"))
}

/// Whether `password` matches an argon2 PHC hash made by [`hash_password`].
pub fn verify_password(password: &SecretString, phc_hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(phc_hash).is_ok_and(|parsed| {
        argon2::Argon2::default()
            .verify_password(password.expose().as_bytes(), &parsed)
            .is_ok()
    })
}

/// The SHA-256 of a high-entropy token, hex: enough to look a token up without storing it.
pub fn hash_token(token: &SecretString) -> String {
    sha256_hex(token.expose())
}

/// The SHA-256 of `value`, lowercase hex. API tokens, console sessions and asset digests use it on every request.
pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// The SCRAM iteration count RFC 7677 asks for: it slows down guessing a password someone chose from a stolen
/// `pg_authid`.
const SCRAM_ITERATIONS: u32 = 4096;

/// The SCRAM iteration count for a password as long as [`generate_database_password`] makes them. The count
/// only slows guessing, and nobody guesses one of 2^256 random values whatever it is (the reasoning of
/// [`hash_generated_password`]). Every iteration costs three times over: PostgreSQL runs them all when the
/// password is set (to refuse a verifier of the empty password: 4.5 ms of a role's creation at 4096, 0.4 ms at
/// 16, measured with `\timing` on the test cluster), tenantry when it makes the verifier, and the client at every
/// login.
const SCRAM_ITERATIONS_GENERATED: u32 = 16;

/// The length of a password [`generate_database_password`] makes: 32 bytes, URL-safe base64 without padding.
const GENERATED_DATABASE_PASSWORD_CHARS: usize = 43;

/// A PostgreSQL SCRAM-SHA-256 verifier for `password`, so `CREATE ROLE … PASSWORD` never sends the plain
/// password over the wire or into the server's statement log. A password shorter than a generated one gets
/// RFC 7677's full iteration count; tenantry sets only generated ones, so that is a backstop.
pub fn scram_sha256_verifier(password: &SecretString) -> String {
    let iterations = if password.expose().len() >= GENERATED_DATABASE_PASSWORD_CHARS {
        SCRAM_ITERATIONS_GENERATED
    } else {
        SCRAM_ITERATIONS
    };
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let mut salted_password = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(
        password.expose().as_bytes(),
        &salt,
        iterations,
        &mut salted_password,
    );
    let hmac = |key: &[u8], message: &[u8]| {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(message);
        mac.finalize().into_bytes()
    };
    let client_key = hmac(&salted_password, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted_password, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
}

/// The password inside a connection URL, if it has one, percent-decoded (a move gives the tenant's role on the
/// new server the password its secret already has, so the secret changes its address only).
pub fn password_in_url(url: &SecretString) -> Option<SecretString> {
    let parsed = url::Url::parse(url.expose()).ok()?;
    let password = parsed.password()?;
    Some(SecretString::new(
        percent_encoding::percent_decode_str(password)
            .decode_utf8_lossy()
            .into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_and_url_safe() {
        let password = generate_database_password();
        assert!(password.expose().len() >= 43);
        assert!(password
            .expose()
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(password, generate_database_password());
        assert_eq!(format!("{password:?} {password}"), "SecretString(***) ***");
    }

    #[test]
    fn generated_passwords_get_a_light_argon2id_hash_any_verifier_reads() {
        let password = random_token(18);
        let hash = hash_generated_password(&password).unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=4096,t=1,p=1$"), "{hash}");
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        let parsed = PasswordHash::new(&hash).unwrap();
        let default_verifier = argon2::Argon2::default();
        assert!(default_verifier
            .verify_password(password.expose().as_bytes(), &parsed)
            .is_ok());
        assert!(default_verifier
            .verify_password(b"something else", &parsed)
            .is_err());
        assert!(hash_generated_password(&SecretString::new("short".into())).is_err());
    }

    #[test]
    fn scram_verifier_has_postgres_shape() {
        let verifier = scram_sha256_verifier(&SecretString::new("pencil".into()));
        assert!(verifier.starts_with("SCRAM-SHA-256$4096:"));
        assert_eq!(verifier.matches('$').count(), 2);
    }

    #[test]
    fn sha256_hex_is_the_lowercase_digest() {
        // FIPS 180-2's example: tokens and sessions stored before must still match.
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hash_token(&SecretString::new("abc".into())),
            sha256_hex("abc")
        );
    }

    #[test]
    fn only_a_generated_password_gets_the_light_scram_count() {
        let generated = generate_database_password();
        assert_eq!(generated.expose().len(), GENERATED_DATABASE_PASSWORD_CHARS);
        assert!(scram_sha256_verifier(&generated).starts_with("SCRAM-SHA-256$16:"));
        let chosen = SecretString::new("correct horse battery staple, in 41 chars".into());
        assert!(chosen.expose().len() < GENERATED_DATABASE_PASSWORD_CHARS);
        assert!(scram_sha256_verifier(&chosen).starts_with("SCRAM-SHA-256$4096:"));
    }
}
