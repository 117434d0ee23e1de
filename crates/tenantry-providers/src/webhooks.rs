//! Webhook deliveries over HTTP: Standard Webhooks signing (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">` with a `whsec_` secret), and the guard
//! against server-side request forgery: a webhook URL is `https://`, or `http://` to a loopback address, and
//! never resolves to a private, link-local or otherwise internal address unless the operator allowed it. The
//! address is judged again at every send and the connection pinned to it, so a name that changes what it
//! resolves to after the check cannot redirect a delivery.

use crate::credentials::SecretString;
use crate::{Error, Result};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// How long one delivery attempt may take.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Where an address points, for the forgery guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// Private, link-local, unique-local, carrier-grade NAT, unspecified, broadcast, documentation, multicast, or
    /// an IPv4-mapped form of one: inside someone's network.
    Internal,
    Public,
}

/// Judges an address.
pub fn classify_address(address: IpAddr) -> AddressClass {
    match address {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                AddressClass::Loopback
            } else if v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                // Carrier-grade NAT (100.64.0.0/10), "this network" (0.0.0.0/8), benchmarking (198.18.0.0/15),
                // reserved (240.0.0.0/4).
                || (a == 100 && (64..128).contains(&b))
                || a == 0
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240
            {
                AddressClass::Internal
            } else {
                AddressClass::Public
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() {
                return AddressClass::Loopback;
            }
            if let Some(v4) = v6.to_ipv4_mapped() {
                return classify_address(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            if v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || first == 0x2001 && v6.segments()[1] == 0x0db8
            // documentation
            {
                AddressClass::Internal
            } else {
                AddressClass::Public
            }
        }
    }
}

/// A webhook URL as checked: its text, and the address to connect to.
#[derive(Debug, Clone)]
pub struct CheckedUrl {
    pub url: reqwest::Url,
    pub address: SocketAddr,
}

/// Checks a webhook URL and resolves it: `https://` or `http://` to a loopback address; the host must resolve,
/// and to no internal address unless `allow_internal`. `Error::Refused` says why.
pub async fn check_url(url: &str, allow_internal: bool) -> Result<CheckedUrl> {
    let refused = |why: String| Err(Error::Refused(why));
    let parsed = match reqwest::Url::parse(url) {
        Ok(parsed) => parsed,
        Err(_) => return refused(format!("{url:?} is not a URL")),
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return refused("a webhook URL may not carry credentials".into());
    }
    let Some(host) = parsed.host_str() else {
        return refused(format!("{url:?} has no host"));
    };
    let port = parsed.port_or_known_default().unwrap_or(443);
    let scheme = parsed.scheme();
    if scheme != "https" && scheme != "http" {
        return refused(format!("a webhook URL is https:// (got {scheme}://)"));
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(address) => vec![SocketAddr::new(address, port)],
        Err(_) => tokio::net::lookup_host((host, port))
            .await
            .map_err(|error| Error::Refused(format!("{host} does not resolve: {error}")))?
            .collect(),
    };
    let Some(first) = addresses.first().copied() else {
        return refused(format!("{host} does not resolve"));
    };
    for address in &addresses {
        match classify_address(address.ip()) {
            AddressClass::Loopback => {}
            AddressClass::Internal if allow_internal => {}
            AddressClass::Internal => {
                return refused(format!(
                    "{host} resolves to {}, an internal address; webhooks may not reach inside the network unless webhook_allow_internal is set",
                    address.ip()
                ))
            }
            AddressClass::Public if scheme == "http" => {
                return refused(
                    "a webhook URL is https://, or http:// to a loopback address".into(),
                )
            }
            AddressClass::Public => {}
        }
    }
    if scheme == "http"
        && addresses
            .iter()
            .any(|address| classify_address(address.ip()) != AddressClass::Loopback)
        && !allow_internal
    {
        return refused("a webhook URL is https://, or http:// to a loopback address".into());
    }
    Ok(CheckedUrl {
        url: parsed,
        address: first,
    })
}

/// A new signing secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_signing_secret() -> SecretString {
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    SecretString::new(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    ))
}

/// The `webhook-signature` value for a delivery: `v1,` and the base64 of HMAC-SHA256 over `id.timestamp.body`
/// with the secret's key (the base64 after `whsec_`).
pub fn sign(secret: &SecretString, id: &str, timestamp: i64, body: &[u8]) -> Result<String> {
    let encoded = secret
        .expose()
        .strip_prefix("whsec_")
        .ok_or_else(|| Error::Refused("a webhook signing secret starts with whsec_".into()))?;
    let key = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| Error::Refused("the webhook signing secret is not base64".into()))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key)
        .map_err(|_| Error::Refused("the webhook signing secret has no key".into()))?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// Sends one delivery: the body with the Standard Webhooks headers, to the address the URL was checked to
/// resolve to. `Ok` on a 2xx answer; otherwise the error in words (the status, or why it could not be sent).
pub async fn deliver(
    checked: &CheckedUrl,
    id: &str,
    timestamp_secs: i64,
    signature: &str,
    body: Vec<u8>,
) -> std::result::Result<(), String> {
    let host = checked.url.host_str().unwrap_or_default().to_owned();
    let client = reqwest::Client::builder()
        .timeout(DELIVERY_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .resolve(&host, checked.address)
        .build()
        .map_err(|error| format!("cannot make an HTTP client: {error}"))?;
    let response = client
        .post(checked.url.clone())
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp_secs.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await
        .map_err(|error| format!("could not deliver: {}", without_url(&error)))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered {}", response.status()))
    }
}

/// An HTTP error's words without the URL (which the operator knows; its query could hold a token).
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "the webhook URL");
    }
    if error.is_timeout() {
        format!("timed out after {} s", DELIVERY_TIMEOUT.as_secs())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_judged() {
        for (address, class) in [
            ("127.0.0.1", AddressClass::Loopback),
            ("127.8.9.10", AddressClass::Loopback),
            ("::1", AddressClass::Loopback),
            ("10.1.2.3", AddressClass::Internal),
            ("172.16.0.1", AddressClass::Internal),
            ("192.168.1.1", AddressClass::Internal),
            ("169.254.169.254", AddressClass::Internal),
            ("100.64.0.1", AddressClass::Internal),
            ("0.0.0.0", AddressClass::Internal),
            ("fd00::1", AddressClass::Internal),
            ("fe80::1", AddressClass::Internal),
            ("::ffff:10.0.0.1", AddressClass::Internal),
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("93.184.216.34", AddressClass::Public),
            ("2606:4700::1111", AddressClass::Public),
        ] {
            assert_eq!(
                classify_address(address.parse().unwrap()),
                class,
                "{address}"
            );
        }
    }

    #[tokio::test]
    async fn urls_are_refused_without_sending_anything() {
        // Literal addresses only: nothing here resolves a name or opens a connection.
        for url in [
            "http://10.1.2.3/hook",
            "https://192.168.0.10/hook",
            "https://[fd00::1]/hook",
            "https://169.254.169.254/latest/meta-data",
            "http://93.184.216.34/hook",
            "ftp://127.0.0.1/hook",
            "https://user:pw@127.0.0.1/hook",
            "not a url",
        ] {
            assert!(
                matches!(check_url(url, false).await, Err(Error::Refused(_))),
                "{url}"
            );
        }
        assert!(check_url("http://127.0.0.1:9/hook", false).await.is_ok());
        assert!(check_url("https://10.1.2.3/hook", true).await.is_ok());
    }

    #[test]
    fn the_signature_is_the_standard_webhooks_one() {
        // The Standard Webhooks specification's own example.
        let secret = SecretString::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned());
        let signature = sign(
            &secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
