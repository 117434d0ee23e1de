//! Who is at the other end of a request: the client's address (what sign-in throttling counts) and whether it
//! reached us over HTTPS (what marks the session cookie `Secure`). Behind a proxy, only a trusted one is
//! believed (`TENANTRY_TRUST_PROXY`): its last `X-Forwarded-For` entry, the address it saw, and its
//! `X-Forwarded-Proto`. Otherwise a client could name any address and dodge the throttle.

use crate::state::ServerState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

/// The request's client, as far as this server can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientContext {
    /// `None` when the server was not told the peer (a router driven without a listener, in tests).
    pub address: Option<IpAddr>,
    /// The client used HTTPS: the server is configured as served over HTTPS, or a trusted proxy says so.
    pub https: bool,
}

impl ClientContext {
    /// What a trusted proxy or the connection says.
    pub fn of(
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        trust_proxy: bool,
        served_over_https: bool,
    ) -> ClientContext {
        let forwarded_address = || {
            headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|value| value.to_str().ok())
                .flat_map(|value| value.split(','))
                .next_back()
                .and_then(|entry| entry.trim().parse::<IpAddr>().ok())
        };
        let forwarded_https = || {
            headers
                .get("x-forwarded-proto")
                .and_then(|value| value.to_str().ok())
                .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
        };
        let peer_address = peer.map(|peer| peer.ip());
        if trust_proxy {
            ClientContext {
                address: forwarded_address().or(peer_address),
                https: served_over_https || forwarded_https(),
            }
        } else {
            ClientContext {
                address: peer_address,
                https: served_over_https,
            }
        }
    }
}

impl FromRequestParts<ServerState> for ClientContext {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ServerState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| *peer);
        Ok(ClientContext::of(
            &parts.headers,
            peer,
            state.settings.trust_proxy,
            state.settings.secure_cookies,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn only_a_trusted_proxy_is_believed() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let forwarded = headers(&[
            ("x-forwarded-for", "203.0.113.9, 10.1.2.3"),
            ("x-forwarded-proto", "https"),
        ]);
        let trusted = ClientContext::of(&forwarded, Some(peer), true, false);
        assert_eq!(trusted.address, Some("10.1.2.3".parse().unwrap()));
        assert!(trusted.https);
        let untrusted = ClientContext::of(&forwarded, Some(peer), false, false);
        assert_eq!(untrusted.address, Some(peer.ip()));
        assert!(!untrusted.https);
        assert!(ClientContext::of(&HeaderMap::new(), Some(peer), false, true).https);
    }
}
